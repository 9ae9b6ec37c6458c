#!/bin/sh
# anscheck.sh TESTCONTENUCDA DOC.xml [DOC.xml…]
#
# Runs the ANS checks on CDA documents: CDA_extended.xsd with xmllint, then the schematrons
# profils/IHE.sch, profils/CI-SIS_ModelesDeContenusCDA.sch, profils/structurationMinimale/
# ASIP-STRUCT-MIN-StrucMin.sch and, for documents declaring 1.2.250.1.213.1.1.1.29,
# CI-SIS_LDL-SES_2022.01.sch, with Saxon-HE (Debian libsaxonhe-java). TESTCONTENUCDA is a
# checkout of ansforge/TestContenuCDA-3-0 (not vendored: no licence), with its top-level
# jeuxDeValeurs/. Each .sch is compiled once with the three ISO skeleton stylesheets of
# schematrons/moteur/ into a .xsl next to it (value-set paths are relative).
#
# StrucMin needs include/voc-1.2.250.1.213.1.1.5.471-DYNAMIC.xml (JDV_J07), which that
# repository lacks: this script writes it from jeuxDeValeurs/JDV_J07_XdsTypeCode_CISIS.xml
# (codes only, which is all the rule reads) when it is missing.
#
# Prints one line per document and check with the count of svrl:failed-assert; exits 1 if any
# count is not zero or a check could not run.
set -u
R=$1; shift
SAXON=${SAXON:-/usr/share/java/Saxon-HE.jar}
M=$R/schematrons/moteur
status=0
compile() {
	base=${1%.sch}
	[ -s "$base.xsl" ] && return 0
	java -cp "$SAXON" net.sf.saxon.Transform -s:"$1" -xsl:"$M/iso_dsdl_include.xsl" -o:"$base.step1.sch" &&
	java -cp "$SAXON" net.sf.saxon.Transform -s:"$base.step1.sch" -xsl:"$M/iso_abstract_expand.xsl" -o:"$base.step2.sch" &&
	java -cp "$SAXON" net.sf.saxon.Transform -s:"$base.step2.sch" -xsl:"$M/iso_svrl_for_xslt2.xsl" -o:"$base.xsl"
}
voc=$R/schematrons/profils/structurationMinimale/include/voc-1.2.250.1.213.1.1.5.471-DYNAMIC.xml
if [ ! -s "$voc" ]; then
	{
		echo '<?xml version="1.0" encoding="UTF-8"?>'
		echo '<valueSets xmlns="urn:hl7-org:v3"><valueSet xmlns="" id="1.2.250.1.213.1.1.5.471"><conceptList>'
		tr -d '\n' < "$R/jeuxDeValeurs/JDV_J07_XdsTypeCode_CISIS.xml" | grep -o '<Concept code="[^"]*" *codeSystem="[^"]*"' |
			sed 's/<Concept/<concept/; s/$/\/>/'
		echo '</conceptList></valueSet></valueSets>'
	} > "$voc"
fi
for doc in "$@"; do
	out=$(xmllint --noout --schema "$R/infrastructure/cda/CDA_extended.xsd" "$doc" 2>&1 | grep -v 'Skipping import')
	case "$out" in *" validates") echo "$doc CDA_extended.xsd: valid" ;; *) echo "$doc CDA_extended.xsd: INVALID: $out"; status=1 ;; esac
	schs="profils/IHE.sch profils/CI-SIS_ModelesDeContenusCDA.sch profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch"
	grep -q 'root="1.2.250.1.213.1.1.1.29"' "$doc" && schs="$schs CI-SIS_LDL-SES_2022.01.sch"
	for s in $schs; do
		if ! compile "$R/schematrons/$s" >/dev/null 2>&1 && [ ! -s "$R/schematrons/${s%.sch}.xsl" ]; then
			echo "$doc $s: cannot compile"; status=1; continue
		fi
		svrl=$(mktemp)
		if ! java -cp "$SAXON" net.sf.saxon.Transform -s:"$doc" -xsl:"$R/schematrons/${s%.sch}.xsl" -o:"$svrl" 2>/dev/null; then
			echo "$doc $s: cannot run"; status=1; rm -f "$svrl"; continue
		fi
		n=$(grep -c '<svrl:failed-assert' "$svrl")
		echo "$doc $s: $n failed-assert ($(grep -c '<svrl:fired-rule' "$svrl") rules fired)"
		[ "$n" = 0 ] || status=1
		rm -f "$svrl"
	done
done
exit $status
