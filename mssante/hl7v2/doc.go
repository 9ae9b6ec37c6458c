// Package hl7v2 reads and writes HL7 version 2 messages in their ER7 encoding ("pipe and hat"):
// segments, fields, repetitions, components, subcomponents and escape sequences, with the
// encoding characters taken from MSH-1 and MSH-2 (HL7 v2 ch. 2 §2.5–2.7). It holds no network
// code: MLLP framing and the bridge to MSSanté live in package bal/hl7bridge.
//
// Reading is tolerant and bounded: segments may end with CR, LF or CRLF, unknown escape
// sequences are kept as written, the character set of MSH-18 is honoured for the ones the
// ANS HL7v2 guides allow (UNICODE UTF-8, 8859/15, 8859/1, ASCII), and [ReadOptions] caps the size, the
// number of segments and the number of fields. Building is strict: [Message.Encode] refuses a
// message whose first segment is not MSH, a segment name that is not three upper-case letters or
// digits, and encoding characters that are not five distinct printable characters; every value
// is escaped on the way out.
//
// Specifications (docs/references.md): HL7 v2 (versions 2.5 and 2.6, ch. 2 control and
// ch. 2A data types), the message profiles of CI-SIS Trans-CDA-R2 and CI-SIS Trans-CDA-MSS, and
// the ANS HL7v2 examples whose shapes the tests reproduce.
//
// No maintained Go HL7v2 library was available from the module proxy; ER7 is small enough that
// a reader written for bounded, hostile input is the safer choice.
//
// Start with [Parse] and [Message.Segment]; build with [New], [Message.Add] and [Segment.Set].
package hl7v2
