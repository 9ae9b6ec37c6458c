// Package xdm writes and reads the IHE XDM media MSSanté mails carry as IHE_XDM.ZIP (IHE ITI
// TF-2 ITI-32 "Distribute Document Set on Media", CI-SIS volet "Échange de documents de
// santé" as restated by the ANS): README.TXT and INDEX.HTM at the root, one folder
// IHE_XDM/SUBSET01 with METADATA.XML (an ebRIM 3.0 SubmitObjectsRequest, ITI TF-3 §4) and the
// CDA documents under ISO 9660 level-1 names DOC0001.XML, DOC0002.XML, …
//
// [Pack] derives each DocumentEntry from its CDA header through a mapping table in code
// (documentEntryMapping, one row per XDS attribute citing the spec), computes hash and size
// from the stored bytes, and is deterministic for a given clock. [Read] opens an archive with
// bounded memory and refuses traversal, absolute names, symlinks, duplicates, compression
// bombs, too many entries, metadata that points outside its subset and any hash, size or
// patient mismatch; it parses METADATA.XML back into the same [DocumentEntry] type and reports
// the known defects of the ANS reference packages (ansforge/interop-exemples-xdm) as warnings.
//
// Specifications (docs/references.md): IHE ITI TF-1 ch. 16 (XDM), ITI-32 and ITI TF-3 §4;
// CI-SIS EDS, whose archive rules the draft IG Portabilité LGC restates; the CI-SIS CDA-XDS
// annex for the mapping; the ANS XDM examples (ansforge/interop-exemples-xdm) for the layout
// of README.TXT and INDEX.HTM.
//
// Start with [Compose], which packs CDA documents into an [mssante.Message] with the PDF copy,
// and [Open], which reads them back from a received one; [Pack] and [Read] work on the archive
// alone.
package xdm
