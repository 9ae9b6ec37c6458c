// Package annuaire finds the MSSanté mailbox (BAL) of a recipient in the Annuaire Santé, behind
// one [Directory] interface and one result type, [Entry], whatever the source:
//
//   - [Extraction]: the daily file Extraction_Correspondance_MSSante published by the ANS (ZIP or
//     TXT, UTF-8, '|'-separated, one header line, 31 columns), loaded into an
//     in-memory index, kept fresh by a [Refresher] that downloads it when its generation time
//     (Content-Disposition) changes;
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
// Results never go to logs: names and identifiers of health professionals stay with the caller.
package annuaire
