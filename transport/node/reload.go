package node

import (
	"fmt"
	"reflect"
	"strings"
)

// ReloadResult says what a [Node.ReloadConfig] did with the settings that changed.
type ReloadResult struct {
	// Applied lists the changed settings now in use, as "section.key" (e.g.
	// "delivery.routes").
	Applied []string
	// RestartNeeded lists the changed settings that take effect at the next start only: the
	// node keeps running with their previous values.
	RestartNeeded []string
}

// liveSettings are the settings ReloadConfig applies to the running node. Every other
// setting is compared and, when changed, named in ReloadResult.RestartNeeded: a change is
// never dropped without a word. The files behind tls.cert_file, tls.key_file, tls.crl_files
// and whitelist.file are read again by every reload whatever the configuration says.
var liveSettings = map[string]bool{"delivery.routes": true}

// ReloadConfig is Reload with the configuration read again: it re-reads the certificate, the
// CRLs and the whitelist, applies the changed settings that can change while the node runs
// (delivery.routes), and names every other changed setting in the result and in a
// "restart needed for: …" log line. On error nothing of cfg is applied and the previous
// material stays in use. It is safe to call while Serve runs, and reloads run one at a time.
func (n *Node) ReloadConfig(cfg *Config) (*ReloadResult, error) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	if err := n.reload(); err != nil {
		return nil, err
	}
	cur := *n.cfg
	cur.Delivery.Routes = n.mta.routes()
	res := &ReloadResult{}
	for _, k := range diffConfig(&cur, cfg) {
		if liveSettings[k] {
			res.Applied = append(res.Applied, k)
		} else {
			res.RestartNeeded = append(res.RestartNeeded, k)
		}
	}
	for _, k := range res.Applied {
		switch k {
		case "delivery.routes":
			n.mta.setRoutes(cfg.Delivery.Routes)
		}
	}
	if len(res.Applied) > 0 {
		n.logger.Info("node: reload applied "+strings.Join(res.Applied, ", "), "applied", res.Applied)
	}
	if len(res.RestartNeeded) > 0 {
		n.logger.Warn("node: restart needed for: "+strings.Join(res.RestartNeeded, ", "), "restart_needed", res.RestartNeeded)
	}
	return res, nil
}

// diffConfig names the settings that differ between a and b, "key" for the top-level ones
// and "table.key" for those of a table, in the order of Config. An empty and a missing list
// or map are the same setting.
func diffConfig(a, b *Config) []string {
	var out []string
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		fa, fb := va.Field(i), vb.Field(i)
		if f.Type.Kind() != reflect.Struct {
			if !sameSetting(fa, fb) {
				out = append(out, name)
			}
			continue
		}
		for j := range f.Type.NumField() {
			if !sameSetting(fa.Field(j), fb.Field(j)) {
				out = append(out, name+"."+tomlName(f.Type.Field(j)))
			}
		}
	}
	return out
}

func tomlName(f reflect.StructField) string {
	if n, _, _ := strings.Cut(f.Tag.Get("toml"), ","); n != "" {
		return n
	}
	return strings.ToLower(f.Name)
}

func sameSetting(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// String is the result as one line for logs and for "mssante reload".
func (r *ReloadResult) String() string {
	s := "reloaded"
	if len(r.Applied) > 0 {
		s += "; applied " + strings.Join(r.Applied, ", ")
	}
	if len(r.RestartNeeded) > 0 {
		s += fmt.Sprintf("; restart needed for: %s", strings.Join(r.RestartNeeded, ", "))
	}
	return s
}
