// Package annuaire finds the MSSanté mailbox (BAL) of a recipient in the Annuaire Santé, behind
// one [Directory] interface and one result type, [Entry], whatever the source:
//
//   - [Extraction]: the daily file Extraction_Correspondance_MSSante published by the ANS (ZIP or
//     TXT, UTF-8, '|'-separated, one header line, 31 columns), loaded into an
//     in-memory index, kept fresh by a [Refresher] that downloads it when its generation time
//     (Content-Disposition) changes. A malformed line (a column too few or too many, longer
//     than [MaxLineSize], not UTF-8) is skipped and reported ([Extraction.Report]: its line
//     number and why, and a count to export as a metric); the file is refused only past
//     [LoadOptions].MaxBadShare of such lines, on a wrong header, or when it was cut
//     ([ErrPartial]);
//   - [LDAP]: any LDAP directory (go-ldap; ldap://, ldaps://, StartTLS; anonymous, simple or SASL
//     EXTERNAL bind; paged search) described by a [Profile]. The default profile follows the only
//     MSSanté LDAP schema seen in public code (base dc=mssante,dc=fr, TypeBAL, mail, sn, givenName,
//     IdentifiantPP, TypeIdentifiantPP, IdentifiantPM, TypeIdentifiantPM, o, l, profession,
//     description), with attributes of our own for the other extraction columns; the schema is
//     in schema/mssante.schema and [WriteLDIF] turns an extraction file into LDIF for it, so a
//     structure can run its own OpenLDAP fed every night. The ANS does not publish the schema
//     of a national LDAP service, so every name is configurable;
//   - [FHIR]: the ANS FHIR API (https://gateway.api.esante.gouv.fr/fhir/v2, Practitioner,
//     PractitionerRole and Organization, search parameters mailbox-mss and mailbox-mss-type,
//     telecom with the MSSANTE email type and the as-ext-mailbox-mss-metadata extension; ANS IG
//     fhir-annuaire), with Bundle paging, a client-side limit of 17 requests per second, and BALs
//     flagged listeRouge never returned. PractitionerRole entries take their names from the
//     Practitioner included with _include=PractitionerRole:practitioner, matched by reference;
//     a profession is searched with qualification-code on Practitioner and role on
//     PractitionerRole, and checked again on every entry returned. A name is searched on
//     Practitioner with _revinclude=PractitionerRole:practitioner: the BALs of the roles that
//     reference a Practitioner of that name (PER and CAB BALs held in a structure) follow its
//     own, with their structure's name and address (_include:iterate, else one
//     Organization?_id request per page); a name with a structure keeps the structure's
//     roles whose Practitioner has that name, and with a structure type, postal code or
//     département the name's roles whose structure has them.
//
// [Extraction.TypeOf] answers "is this address a BAL, and of which type?" from the address
// index alone; [Extraction.Lookup] adds the parse of the line into the whole [Entry]. Neither
// allocates. The index keeps the file's text and takes about 2.2 times its size in memory
// (bench/annuaire/run.sh measures it).
//
// BAL types are those of TRE_R257-TypeBAL: PER, ORG, APP and CAB. The public
// extraction file carries PER and ORG only: applicative BALs (APP) are found through FHIR.
//
// Specifications (docs/references.md): the Extraction MSSanté file; the Annuaire Santé API
// and the Annuaire Santé FHIR IG; LDAP per RFC 4514 and RFC 4515 with paged results (RFC 2696)
// and LDIF (RFC 2849); BAL types of TRE_R257. Start with [Directory] and [Query]: [LoadFile],
// [NewLDAP] or [NewFHIR] give one.
//
// An operator checks and publishes its own BALs with the same package: [Reconcile] compares
// its registry with the national view (per BAL: ok, missing, stale, different), and
// [Publisher] writes them through the FHIR write API of the API BAL MSS IG (FHIR Patch on
// telecom, conditional targets by RPPS, situation or FINESS), an endpoint the ANS still
// announces as in development.
//
// Results never go to logs: names and identifiers of health professionals stay with the caller.
//
// # How the FHIR backend searches
//
// A Departement is searched on the postal codes of Organizations (the département is derived
// from the postal code).
//
// PractitionerRole searches ask for _include=PractitionerRole:practitioner and
// PractitionerRole:organization: the names, the national identifier and (when the role has
// none) the profession of a PractitionerRole's BAL come from the Practitioner its practitioner
// element references, its structure from the referenced Organization (by literal reference or by
// identifier, never by position). When that resource is missing from the Bundle, or more than one matches, the
// entry goes without rather than with another's. Included resources are never results. An
// RPPS or NationalID reaches PractitionerRole as practitioner=Practitioner/id references, a
// StructureID as organization=Organization/id ones, found by a first search by identifier
// (the IG lists no chained parameter). A role has no address: when such a reference bounds
// the search, postal criteria are checked on the client, on its included Organization.
//
// Profession is searched with qualification-code=TRE_G15|code on Practitioner (fhir/v2
// documents the profession among the qualifications of a Practitioner) and as
// [FHIROptions.ScanRolesForProfession] says on PractitionerRole; Organizations hold no
// profession and are not searched.
//
// Name is sent to Practitioner (and Organization) searches, never to PractitionerRole: the IG
// lists no name parameter nor chain there. With a StructureID (or a person and a
// StructureIDType), which keeps the Practitioner search out, the PractitionerRoles the
// organization (or practitioner) references select are read and only those whose included
// Practitioner's name matches the whole of Name are kept. Any other Name goes to the
// Practitioner search, with a StructureIDType, a postal code or a Departement too: those are
// checked on the client, on the structure of the roles it brings. A HumanName matches when
// one of its parts starts with the value, so a Practitioner search sends only the first word
// of Name ("dupont" for "dupont jean"); the whole of Name is checked on each entry. The
// Practitioner search asks _revinclude=PractitionerRole:practitioner (the fhir/v2 documentation's
// modifying-search-results page): the BALs of an included PractitionerRole (PER or CAB BALs
// held in a structure) are returned after those of the matched Practitioner its practitioner
// element references (matched by reference, never by position; a role whose Practitioner
// is not among the page's results gives nothing), named from it. As a BAL may be on the
// roles only, that search does not filter Practitioners on their own BALs (mailbox-mss,
// mailbox-mss-type): it reads every Practitioner of the name, and the type, address and
// listeRouge are checked on each BAL. Its qualification-code keeps to the Practitioner's
// profession, so a fhir/v1-shaped role coded with another profession than its
// Practitioner's is not found by a Name and Profession search. That search also asks
// _include:iterate=PractitionerRole:organization (FHIR R4 search §3.1.1.5.4; the ANS API does
// not document it, see [FHIROptions.NoIncludeIterate]), and the Organizations a page still lacks
// are fetched with one Organization?_id=id1,id2… request, so a role entry carries its
// structure's name and postal address as a PractitionerRole search gives them (matched by
// "Organization/id"; a role naming its Organization by identifier only is completed when
// that Organization is in the page by then; an Organization not found leaves them empty).
package annuaire
