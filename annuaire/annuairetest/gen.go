// Package annuairetest writes realistic, entirely synthetic Extraction_Correspondance_MSSante
// files, for tests, benchmarks and demonstrations: the
// 31 columns of the real file, PER and ORG BALs only (as observed in the
// public file), RPPS and FINESS numbers with valid check digits, French names with accents,
// AFNOR postal address lines, and some addresses on several lines (the real file has about
// 169). A full-size file (536,000 lines) is about 89 MB, as the real one in 2026.
//
// Nothing in it is real data: every name and number is drawn from a seeded generator.
package annuairetest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/mssante-go/sdk/internal/luhn"
	"github.com/mssante-go/sdk/internal/postcode"
)

// FullSize is the number of data lines of the real file in 2026.
const FullSize = 536000

// header is the header line of the real file (kept here so the generator does not depend on
// the package it feeds).
const header = "Type de BAL|Adresse BAL|Type Identifiant PP|Identifiant PP|Identification nationale PP|" +
	"Type identifiant structure|Identification Structure|Service de rattachement|" +
	"Civilité d'exercice|Nom d'exercice|Prénom d'exercice|Catégorie profession|" +
	"Libellé de catégorie profession|Code Profession|Libellé Profession|Code savoir-faire|" +
	"Libellé savoir-faire|Dématérialisation|Raison Sociale structure BAL|" +
	"Enseigne commerciale structure BAL|L2COMPLEMENTLOCALISATION|L3COMPLEMENTDISTRIBUTION|" +
	"L4NUMEROVOIE|L4COMPLEMENTNUMEROVOIE|NL4TYPEVOIE|L4LIBELLEVOIE|L5LIEUDITMENTION|" +
	"L6LIGNEACHEMINEMENT|Code postal|Département|Pays"

var (
	lastNames = []string{"MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND",
		"DUBOIS", "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFÈVRE", "LEROY", "ROUX", "DAVID",
		"BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE",
		"ROUSSEAU", "VINCENT", "MULLER", "LEFEBVRE", "FAURE", "ANDRÉ", "MERCIER", "BLANC",
		"GUÉRIN", "BOYER", "GARNIER", "CHEVALIER", "FRANÇOIS", "LEGRAND", "GAUTHIER", "GARCIA",
		"PERRIN", "ROBIN", "CLÉMENT", "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER",
		"MASSON", "MARCHAND", "DUVAL", "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOËL", "MEYER",
		"DUFOUR", "MEUNIER", "BRUN", "BLANCHARD", "GIRAUD", "JOLY", "RIVIÈRE", "LUCAS", "BRUNET",
		"GAILLARD", "BARBIER", "ARNAUD", "MARTÍNEZ", "GÉRARD", "ROCHE", "RENARD", "SCHMITT", "ROY",
		"LEROUX", "COLIN", "VIDAL", "CARON", "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE",
		"RENAUD", "DUMAS", "LACROIX", "OLIVIER", "PHILIPPE", "BOURGEOIS", "PIERRE", "BENOÎT",
		"REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ", "GUILLAUME", "LECOMTE", "LOPEZ", "JEAN",
		"DUPUY", "GUILLOT", "HUBERT", "BERGER", "CARPENTIER", "SANCHEZ", "DUPUIS", "MOULIN",
		"LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ", "BOUCHER", "FLEURY", "ROYER", "KLEIN",
		"JACQUET", "ADAM", "PARIS", "POIRIER", "MARTY", "AUBRY", "GUYOT", "CARRÉ", "CHARLES",
		"RENAULT", "CHARPENTIER", "MÉNARD", "MAILLARD", "BARON", "BERTIN", "BAILLY", "HERVÉ",
		"SCHNEIDER", "FERNANDEZ", "LE GALL", "COLLET", "LÉGER", "BOUVIER", "JULIEN", "PRÉVOST",
		"MILLET", "PERROT", "DANIEL", "LE ROUX", "COUSIN", "GERMAIN", "BRETON", "BESSON",
		"LANGLOIS", "RÉMY", "LE GOFF", "PELLETIER", "LÉVÊQUE", "PERRIER", "LEBLANC", "BARRÉ",
		"LEBRUN", "MARCHAL", "WEBER", "MALLET", "HAMON", "BOULANGER", "JACOB", "MONNIER",
		"MICHAUD", "RODRIGUEZ", "GUICHARD", "GILLET", "ÉTIENNE", "GRONDIN", "POULAIN", "TESSIER",
		"CHEVALLIER", "COLLIN", "CHAUVIN", "DA SILVA", "BOUCHET", "GAY", "LEMAÎTRE", "BENARD",
		"MARÉCHAL", "HUMBERT", "REYNAUD", "ANTOINE", "HOARAU", "PERRET", "BARTHÉLEMY", "CORDIER",
		"PICHON", "LEJEUNE", "GILBERT", "LAMY", "DELAUNAY", "PASQUIER", "CARLIER", "LAPORTE",
		"D'ALMEIDA", "N'DIAYE", "SAINT-JUST", "DE LA FONTAINE", "L'HÔTE", "ŒUVRARD"}
	syllables  = []string{"BA", "BE", "BO", "CA", "CHE", "DA", "DE", "DU", "FA", "GA", "GE", "LA", "LE", "LI", "MA", "ME", "MO", "NA", "NE", "PA", "PE", "RA", "RE", "RO", "SA", "SE", "TA", "TE", "VA", "VE", "ZA"}
	endings    = []string{"", "T", "D", "N", "RD", "UX", "AU", "IN", "ON", "ET", "EL", "IER", "AND", "ARD", "OT"}
	firstNames = []string{"Jean", "Marie", "Pierre", "Anne", "Michel", "Françoise", "Philippe",
		"Catherine", "Alain", "Isabelle", "Nicolas", "Nathalie", "Christophe", "Sylvie", "Éric",
		"Véronique", "Stéphane", "Hélène", "Laurent", "Céline", "Frédéric", "Sandrine", "Sébastien",
		"Valérie", "Julien", "Aurélie", "Jérôme", "Émilie", "Thierry", "Anaïs", "Olivier", "Chloé",
		"Jean-François", "Marie-Hélène", "Zoé", "Noël", "Gaëlle", "Benoît", "Loïc", "Maëlle",
		"Thomas", "Camille", "Antoine", "Léa", "Hugo", "Manon", "Lucas", "Inès", "Mathieu", "Agnès"}
	professions = [][5]string{ // category, profession code, label, savoir-faire, domain index
		{"C", "10", "Médecin", "SM54|Qualifié en Médecine Générale (SM)", "0"},
		{"C", "10", "Médecin", "SM04|Cardiologie et maladies vasculaires", "0"},
		{"C", "10", "Médecin", "SM26|Radio-diagnostic", "0"},
		{"C", "10", "Médecin", "SM42|Pédiatrie", "0"},
		{"C", "10", "Médecin", "SM15|Gynécologie-obstétrique", "0"},
		{"C", "21", "Pharmacien", "|", "1"},
		{"C", "40", "Chirurgien-Dentiste", "SCD01|Orthopédie dento-faciale", "5"},
		{"C", "50", "Sage-Femme", "|", "4"},
		{"C", "60", "Infirmier", "|", "2"},
		{"C", "70", "Masseur-Kinésithérapeute", "|", "3"},
		{"C", "80", "Pédicure-Podologue", "|", "6"},
		{"C", "91", "Orthophoniste", "|", "6"},
	}
	cities = []struct{ cp, name string }{
		{"75012", "PARIS"}, {"75013", "PARIS"}, {"13005", "MARSEILLE"}, {"69003", "LYON"},
		{"31059", "TOULOUSE"}, {"06000", "NICE"}, {"44093", "NANTES"}, {"67091", "STRASBOURG"},
		{"34295", "MONTPELLIER"}, {"33076", "BORDEAUX"}, {"59037", "LILLE"}, {"35033", "RENNES"},
		{"51092", "REIMS"}, {"42055", "SAINT-ÉTIENNE"}, {"83056", "TOULON"}, {"38043", "GRENOBLE"},
		{"21079", "DIJON"}, {"49933", "ANGERS"}, {"30029", "NÎMES"}, {"40107", "DAX"},
		{"97405", "SAINT-DENIS"}, {"20000", "AJACCIO"}, {"20250", "CORTE"}, {"64109", "BAYONNE"},
		{"87042", "LIMOGES"}, {"29609", "BREST"}, {"80054", "AMIENS"}, {"63003", "CLERMONT-FERRAND"},
	}
	streetTypes = []string{"R", "AV", "BD", "PL", "CHE", "IMP", "ALL", "QU", "RTE"}
	streets     = []string{"DE LA RÉPUBLIQUE", "VICTOR HUGO", "JEAN JAURÈS", "DU GÉNÉRAL DE GAULLE",
		"PASTEUR", "DES ÉCOLES", "DE L'HÔPITAL", "GAMBETTA", "DU CHÂTEAU", "SAINT-MICHEL",
		"DES LILAS", "FOCH", "DE LA GARE", "CARNOT", "DES ACACIAS"}
	orgKinds = []string{"CENTRE HOSPITALIER", "CLINIQUE", "EHPAD", "CENTRE DE SANTÉ",
		"LABORATOIRE DE BIOLOGIE MÉDICALE", "MAISON DE SANTÉ PLURIPROFESSIONNELLE", "PHARMACIE",
		"CABINET DE RADIOLOGIE", "CENTRE HOSPITALIER UNIVERSITAIRE", "GROUPE HOSPITALIER"}
	services = []string{"Cardiologie", "Urgences", "Pédiatrie", "Radiologie", "Secrétariat médical",
		"Bureau des entrées", "Maternité", "Oncologie", "Néphrologie", "Gériatrie", "Pharmacie à usage intérieur"}
	domains = []string{"medecin.mssante.fr", "pharmacien.mssante.fr", "infirmier.mssante.fr",
		"masseur-kinesitherapeute.mssante.fr", "sage-femme.mssante.fr", "chirurgien-dentiste.mssante.fr",
		"pro.mssante.fr"}
)

// WriteExtraction writes a header line and lines data lines to w, drawn from seed: the same arguments
// always give the same file.
func WriteExtraction(w io.Writer, lines int, seed uint64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	g := &generator{r: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15)), w: bw}
	fmt.Fprintf(bw, "%s\n", header)
	var prev []string
	for i := range lines {
		var f []string
		switch {
		case prev != nil && g.r.IntN(3200) == 0: // the same address on another line
			f = append([]string(nil), prev...)
			f[7] = services[g.r.IntN(len(services))]
			f[17] = yesNo(g.r.IntN(2) == 0)
		case g.r.IntN(100) < 91:
			f = g.per(i)
		default:
			f = g.org(i)
		}
		prev = f
		bw.WriteString(strings.Join(f, "|"))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

type generator struct {
	r *rand.Rand
	w *bufio.Writer
}

func (g *generator) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *generator) lastName() string {
	if g.r.IntN(3) > 0 {
		return g.pick(lastNames)
	}
	var b strings.Builder
	for range 2 + g.r.IntN(2) {
		b.WriteString(g.pick(syllables))
	}
	b.WriteString(g.pick(endings))
	return b.String()
}

func (g *generator) per(i int) []string {
	f := make([]string, 31)
	last, first := g.lastName(), g.pick(firstNames)
	p := professions[g.r.IntN(len(professions))]
	if g.r.IntN(2) == 0 {
		p = professions[g.r.IntN(5)] // médecins are the most numerous
	}
	rpps := withLuhn(fmt.Sprintf("10%08d", g.r.IntN(100000000)))
	f[0] = "PER"
	f[1] = fmt.Sprintf("%s.%s%d@%s", mailPart(first), mailPart(last), i%1000, domains[p[4][0]-'0'])
	f[2], f[3], f[4] = "8", rpps, "8"+rpps
	f[8] = []string{"M", "MME", "DR", "PR"}[g.r.IntN(4)]
	f[9], f[10] = last, first
	f[11], f[12] = p[0], "Civil"
	f[13], f[14] = p[1], p[2]
	if g.r.IntN(3) == 0 {
		sf := strings.SplitN(p[3], "|", 2)
		f[15], f[16] = sf[0], sf[1]
	}
	f[17] = yesNo(g.r.IntN(4) > 0)
	switch g.r.IntN(6) {
	case 0: // attached to a structure
		g.structure(f)
	case 1: // a liberal practice with its address
		g.address(f)
		f[18] = "CABINET DU DR " + last
	}
	return f
}

func (g *generator) org(i int) []string {
	f := make([]string, 31)
	f[0] = "ORG"
	g.structure(f)
	f[7] = g.pick(services)
	f[17] = yesNo(g.r.IntN(2) == 0)
	f[1] = fmt.Sprintf("%s.%d@%s.mssante.fr", mailPart(f[7]), i, mailPart(f[18]))
	return f
}

func (g *generator) structure(f []string) {
	c := cities[g.r.IntN(len(cities))]
	if g.r.IntN(4) > 0 {
		dept := c.cp[:2] // Corsican FINESS numbers start 2A or 2B: keep to digits here
		finess := withLuhn(fmt.Sprintf("%s%06d", dept, g.r.IntN(1000000)))
		f[5], f[6] = "1", "1"+finess
	} else {
		siren := withLuhn(fmt.Sprintf("%08d", g.r.IntN(100000000)))
		siret := withLuhn(fmt.Sprintf("%s%04d", siren, 1+g.r.IntN(9999)))
		f[5], f[6] = "3", "3"+siret
	}
	f[18] = g.pick(orgKinds) + " " + c.name
	if g.r.IntN(3) == 0 {
		f[19] = "Site " + g.pick(streets)
	}
	g.address(f)
	f[28], f[27] = c.cp, c.cp+" "+c.name
	f[29] = postcode.Departement(c.cp)
}

func (g *generator) address(f []string) {
	c := cities[g.r.IntN(len(cities))]
	if g.r.IntN(5) == 0 {
		f[20] = fmt.Sprintf("Bâtiment %c", 'A'+g.r.IntN(6))
	}
	if g.r.IntN(10) == 0 {
		f[21] = fmt.Sprintf("BP %d", 1+g.r.IntN(900))
	}
	f[22] = fmt.Sprint(1 + g.r.IntN(180))
	if g.r.IntN(10) == 0 {
		f[23] = "B"
	}
	f[24], f[25] = g.pick(streetTypes), g.pick(streets)
	f[27], f[28] = c.cp+" "+c.name, c.cp
	f[29] = postcode.Departement(c.cp)
	f[30] = "FRANCE"
}

func yesNo(b bool) string {
	if b {
		return "O"
	}
	return "N"
}

// mailPart turns a name into the local part of an address: lower-case ASCII, dashes.
func mailPart(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case 'a' <= r && r <= 'z' || '0' <= r && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		case strings.ContainsRune("àâä", r):
			b.WriteByte('a')
		case strings.ContainsRune("éèêë", r):
			b.WriteByte('e')
		case strings.ContainsRune("îï", r):
			b.WriteByte('i')
		case strings.ContainsRune("ôö", r):
			b.WriteByte('o')
		case strings.ContainsRune("ùûü", r):
			b.WriteByte('u')
		case r == 'ç':
			b.WriteByte('c')
		case r == 'œ':
			b.WriteString("oe")
		default:
			dash = true
		}
	}
	return b.String()
}

// withLuhn appends the Luhn check digit to the digits s (RPPS, FINESS, SIREN and SIRET keys).
func withLuhn(s string) string {
	d, err := luhn.Digit(s)
	if err != nil {
		panic(err) // s is made of digits here
	}
	return s + string(rune(d))
}
