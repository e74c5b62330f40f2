package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fwdmux/fwdmux/admin"
)

const examplesDir = "../../examples"

func TestExampleConfigChecks(t *testing.T) {
	code, stdout, stderr := runMain(t, "check", "-c", filepath.Join(examplesDir, "fwdmux.toml"))
	if code != 0 {
		t.Fatalf("fwdmux check -c examples/fwdmux.toml: exit %d\n%s", code, stderr)
	}
	if !json.Valid([]byte(stdout)) {
		t.Errorf("check output is not JSON:\n%s", stdout)
	}
	if strings.Contains(stderr, "warning") {
		t.Errorf("warnings for the example: %s", stderr)
	}
}

// envConfig checks that a set of FWDMUX_* variables from an example makes a valid
// configuration, as the binary in the image would build it.
func envConfig(t *testing.T, vars map[string]string) Config {
	t.Helper()
	c, err := buildConfig(options{}, env(vars))
	if err != nil {
		t.Fatalf("the example's environment %v: %v", vars, err)
	}
	return c
}

// The image's environment, from the Dockerfile's ENV lines.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	re := regexp.MustCompile(`(FWDMUX_[A-Z_]+)=(\S+)`)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM scratch", "COPY bin/fwdmux /fwdmux", "ca-certificates.crt", "USER 65532",
		"EXPOSE 24224 24224/udp 24223", `CMD ["/fwdmux", "healthcheck"]`, `ENTRYPOINT ["/fwdmux"]`,
		"--chown=65532:65532 bin/rootfs/var/lib/fwdmux/ /var/lib/fwdmux/",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	vars := dockerfileEnv(t)
	if vars["FWDMUX_LISTEN"] != "0.0.0.0:24224" || vars["FWDMUX_STATE_DIR"] != "/var/lib/fwdmux" {
		t.Errorf("Dockerfile env %v", vars)
	}
	c := envConfig(t, vars) // loopback admin: valid without a token
	if c.Admin.Listen != "127.0.0.1:24223" {
		t.Errorf("image admin = %q, want loopback", c.Admin.Listen)
	}
}

func readYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// get walks maps and lists: get(v, "spec", "initContainers", 0, "name").
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: not a map in %v", k, path)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at [%d]: not a list long enough in %v", k, path)
			}
			v = l[k]
		}
	}
	return v
}

func str(t *testing.T, v any, path ...any) string {
	t.Helper()
	s, _ := get(t, v, path...).(string)
	return s
}

func TestDockerCompose(t *testing.T) {
	docs := readYAML(t, filepath.Join(examplesDir, "docker-compose.yml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	c := docs[0]
	for _, svc := range []string{"app", "fwdmux", "fluentd"} {
		if get(t, c, "services", svc) == nil {
			t.Errorf("no service %s", svc)
		}
	}
	fw := get(t, c, "services", "fwdmux")
	if img := str(t, fw, "image"); !strings.Contains(img, "fwdmux") {
		t.Errorf("fwdmux image = %q", img)
	}
	ports, _ := get(t, fw, "ports").([]any)
	if !slices.ContainsFunc(ports, func(p any) bool { s, _ := p.(string); return strings.HasSuffix(s, ":24224") }) {
		t.Errorf("fwdmux does not publish 24224: %v", ports)
	}
	hc, _ := get(t, fw, "healthcheck", "test").([]any)
	if len(hc) < 3 || hc[1] != "/fwdmux" || hc[2] != "healthcheck" {
		t.Errorf("healthcheck test = %v", hc)
	}
	mounts, _ := get(t, fw, "volumes").([]any)
	var logMount string
	for _, m := range mounts {
		if s, _ := m.(string); strings.Contains(s, "/var/log/app") {
			logMount = s
		}
	}
	if logMount == "" {
		t.Fatalf("fwdmux does not mount the app's logs: %v", mounts)
	}
	vol := strings.Split(logMount, ":")[0]
	if get(t, c, "volumes", vol) == nil && !strings.HasPrefix(vol, ".") {
		t.Errorf("volume %s not declared", vol)
	}
	appMounts, _ := get(t, c, "services", "app", "volumes").([]any)
	if !slices.ContainsFunc(appMounts, func(m any) bool { s, _ := m.(string); return strings.HasPrefix(s, vol+":") }) {
		t.Errorf("the app does not share volume %s: %v", vol, appMounts)
	}
	if str(t, c, "services", "app", "logging", "driver") != "fluentd" {
		t.Errorf("the app does not log through the fluentd driver")
	}
	if str(t, c, "services", "app", "depends_on", "fwdmux", "condition") != "service_healthy" {
		t.Errorf("the app does not wait for a healthy fwdmux")
	}
	if _, err := os.Stat(filepath.Join(examplesDir, "fluentd.conf")); err != nil {
		t.Error(err)
	}

	// The sidecar's environment on top of the image's makes a valid configuration.
	vars := dockerfileEnv(t)
	envMap, _ := get(t, fw, "environment").(map[string]any)
	for k, v := range envMap {
		vars[k], _ = v.(string)
	}
	cfg := envConfig(t, vars)
	if len(cfg.Servers) != 1 || cfg.Servers[0].Address != "fluentd:24224" || len(cfg.Logs) != 1 {
		t.Errorf("compose config: servers %v logs %v", addrs(cfg), logSpecs(cfg))
	}
}

func TestKubernetes(t *testing.T) {
	var pod, secret map[string]any
	files, err := filepath.Glob(filepath.Join(examplesDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		for _, d := range readYAML(t, f) {
			if d["apiVersion"] == nil || d["kind"] == nil || get(t, d, "metadata", "name") == nil {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			switch d["kind"] {
			case "Pod":
				pod = d
			case "Secret":
				secret = d
			}
		}
	}
	if pod == nil || secret == nil {
		t.Fatal("want a Pod and a Secret")
	}
	spec := get(t, pod, "spec")
	volumes := map[string]bool{}
	for _, v := range get(t, spec, "volumes").([]any) {
		volumes[str(t, v, "name")] = true
	}

	sc := get(t, spec, "initContainers", 0)
	if str(t, sc, "name") != "fwdmux" || str(t, sc, "restartPolicy") != "Always" {
		t.Fatalf("the first initContainer must be fwdmux with restartPolicy: Always (native sidecar)")
	}
	if !strings.Contains(str(t, sc, "image"), "fwdmux") {
		t.Errorf("sidecar image = %q", str(t, sc, "image"))
	}
	ports := map[string]int{}
	for _, p := range get(t, sc, "ports").([]any) {
		ports[str(t, p, "name")] = get(t, p, "containerPort").(int)
	}
	if ports["forward"] != 24224 || ports["admin"] != 24223 {
		t.Errorf("sidecar ports = %v", ports)
	}
	probes := map[string]string{"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"}
	for probe, path := range probes {
		if got := str(t, sc, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %q, want %s", probe, got, path)
		}
		if port := str(t, sc, probe, "httpGet", "port"); ports[port] == 0 {
			t.Errorf("%s port %q is not a declared port", probe, port)
		}
	}
	mounted := map[string]string{}
	for _, m := range get(t, sc, "volumeMounts").([]any) {
		name := str(t, m, "name")
		if !volumes[name] {
			t.Errorf("sidecar mounts undeclared volume %s", name)
		}
		mounted[str(t, m, "mountPath")] = name
	}
	if mounted["/var/lib/fwdmux"] == "" || mounted["/var/log/app"] == "" {
		t.Errorf("sidecar mounts %v, want /var/log/app and /var/lib/fwdmux", mounted)
	}
	// The app shares the log volume.
	app := get(t, spec, "containers", 0)
	shared := false
	for _, m := range get(t, app, "volumeMounts").([]any) {
		shared = shared || str(t, m, "name") == mounted["/var/log/app"]
	}
	if !shared {
		t.Errorf("the app does not mount the log volume %s", mounted["/var/log/app"])
	}

	// The sidecar's env makes a valid config; the admin API on the pod IP has its token
	// from the Secret.
	vars := dockerfileEnv(t)
	for _, e := range get(t, sc, "env").([]any) {
		name := str(t, e, "name")
		if v, ok := e.(map[string]any)["value"].(string); ok {
			vars[name] = v
			continue
		}
		ref := get(t, e, "valueFrom", "secretKeyRef")
		if str(t, ref, "name") != str(t, secret, "metadata", "name") {
			t.Errorf("%s refers to secret %q", name, str(t, ref, "name"))
		}
		vars[name] = str(t, secret, "stringData", str(t, ref, "key"))
		if vars[name] == "" {
			t.Errorf("%s: key %q not in the Secret", name, str(t, ref, "key"))
		}
	}
	if vars["FWDMUX_ADMIN_TOKEN"] == "" {
		t.Error("admin API on the pod IP without FWDMUX_ADMIN_TOKEN")
	}
	cfg := envConfig(t, vars)
	if cfg.Admin.Listen != "0.0.0.0:24223" || len(cfg.Servers) != 1 || len(cfg.Logs) != 1 {
		t.Errorf("pod config: admin %s servers %v logs %v", cfg.Admin.Listen, addrs(cfg), logSpecs(cfg))
	}

	// The init step posts a valid target to /logs with the token, after the sidecar.
	reg := get(t, spec, "initContainers", 1)
	script := strings.Join(func() []string {
		var s []string
		for _, a := range get(t, reg, "command").([]any) {
			s = append(s, a.(string))
		}
		return s
	}(), " ")
	for _, want := range []string{"-X POST", "Authorization: Bearer $FWDMUX_ADMIN_TOKEN", "http://127.0.0.1:24223/logs", "application/json"} {
		if !strings.Contains(script, want) {
			t.Errorf("register step lacks %q", want)
		}
	}
	m := regexp.MustCompile(`--data '([^']*)'`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("register step has no --data body")
	}
	var spec2 admin.LogSpec
	if err := json.Unmarshal([]byte(m[1]), &spec2); err != nil {
		t.Fatalf("POST /logs body: %v", err)
	}
	target := logSpecToTarget(spec2).WithDefaults()
	if err := target.Validate(); err != nil {
		t.Errorf("POST /logs body is not a valid target: %v", err)
	}
	allowed := false
	for _, p := range cfg.Admin.AllowPaths {
		allowed = allowed || strings.HasSuffix(p, "/**") && strings.HasPrefix(target.Path, strings.TrimSuffix(p, "**"))
	}
	if !allowed {
		t.Errorf("POST /logs path %s is outside allow_paths %v", target.Path, cfg.Admin.AllowPaths)
	}
	if !mountedUnder(mounted, target.Path) {
		t.Errorf("POST /logs path %s is not on a volume the sidecar mounts", target.Path)
	}
}

func mountedUnder(mounts map[string]string, path string) bool {
	for dir := range mounts {
		if strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/") {
			return true
		}
	}
	return false
}
