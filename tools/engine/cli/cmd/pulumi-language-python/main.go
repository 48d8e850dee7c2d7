// Command pulumi-language-python is agent-platform's own, minimal Python
// language host for the Pulumi engine.
//
// Why it exists: upstream's language host lives in its own Go module, and the
// Go module proxy reachable from our machines does not serve that module at
// any version we need. The program-side half of the protocol, the
// `pulumi-language-python-exec` script, ships in the pulumi sdk/v3 module and
// is installed next to this binary by scripts/pulumi-engine.
//
// What it supports (all that agent-platform needs):
//   - Run: runs a Python program through pulumi-language-python-exec, with the
//     interpreter of the virtualenv named by the `virtualenv` runtime option
//     (relative to the project root), else $PULUMI_PYTHON_CMD, else python3.
//   - RunPlugin: runs a Python policy pack (PulumiPolicy.yaml, runtime python,
//     same `virtualenv` option) as the engine's analyzer plugin.
//   - InstallDependencies: creates the virtualenv from requirements.txt when it
//     is missing; otherwise does nothing.
//   - GetRequiredPackages/GetRequiredPlugins: report nothing on purpose. The
//     engine then loads each resource provider when the program first
//     registers a resource of it, at the version the Python SDK asks for; an
//     SDK installed in the virtualenv but unused (e.g. pulumi_aws) therefore
//     never needs its provider plugin.
//   - GetPluginInfo, About, GetProgramDependencies, Handshake.
//
// Only the `pip` toolchain (plain virtualenv) is supported; poetry and uv are
// rejected with a clear error.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// execScriptName is the program-side shim, installed next to this binary.
const execScriptName = "pulumi-language-python-exec"

// bailExitCode is what pulumi-language-python-exec exits with after it has
// already shown the user an actionable error message.
const bailExitCode = 32

func main() {
	tracing := flag.String("tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.String("root", "", "Project root directory (unused; taken from each request)")
	flag.Bool("logflow", false, "Flow logging settings to child processes")
	flag.Parse()

	logging.InitLogging(false, 0, false)
	cmdutil.InitTracing("pulumi-language-python", "pulumi-language-python", *tracing)

	engineAddress := ""
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
	}

	execScript, err := findExecScript()
	if err != nil {
		cmdutil.Exit(err)
	}

	host := &languageHost{
		engineAddress: engineAddress,
		tracing:       *tracing,
		execScript:    execScript,
	}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start language host RPC server: %w", err))
	}

	// The engine reads the port from our first line of output.
	fmt.Printf("%d\n", handle.Port)

	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}

// findExecScript locates pulumi-language-python-exec next to this binary
// (following symlinks), falling back to PATH.
func findExecScript() (string, error) {
	if self, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(self); err == nil {
			self = resolved
		}
		candidate := filepath.Join(filepath.Dir(self), execScriptName)
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
	}
	if p, err := exec.LookPath(execScriptName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("could not find %s next to the language host or on PATH", execScriptName)
}

type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string
	tracing       string
	execScript    string
}

func (h *languageHost) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

func (h *languageHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// GetRequiredPlugins reports no plugins: see the package comment.
func (h *languageHost) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// GetRequiredPackages reports no packages: see the package comment.
func (h *languageHost) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// runtimeOptions are the `runtime.options` of Pulumi.yaml / PulumiPolicy.yaml
// that this host understands.
type runtimeOptions struct {
	virtualenv string
	toolchain  string
}

func parseOptions(opts *structpb.Struct) (runtimeOptions, error) {
	var ro runtimeOptions
	if opts == nil {
		return ro, nil
	}
	m := opts.AsMap()
	if v, ok := m["virtualenv"]; ok {
		s, ok := v.(string)
		if !ok {
			return ro, errors.New("runtime option 'virtualenv' must be a string")
		}
		ro.virtualenv = s
	}
	if v, ok := m["toolchain"]; ok {
		s, ok := v.(string)
		if !ok {
			return ro, errors.New("runtime option 'toolchain' must be a string")
		}
		ro.toolchain = s
	}
	switch ro.toolchain {
	case "", "pip":
	default:
		return ro, fmt.Errorf("runtime toolchain %q is not supported by agent-platform's language host "+
			"(only 'pip' with a 'virtualenv' option)", ro.toolchain)
	}
	return ro, nil
}

// pythonEnv describes the interpreter used for a program or plugin.
type pythonEnv struct {
	python     string // interpreter to run
	virtualenv string // absolute virtualenv path, or "" when none
}

// resolvePython picks the interpreter for a program rooted at root.
func resolvePython(root string, ro runtimeOptions) (pythonEnv, error) {
	if ro.virtualenv != "" {
		venv := ro.virtualenv
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(root, venv)
		}
		py := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(py); err != nil {
			return pythonEnv{}, fmt.Errorf("the virtualenv %s does not exist or has no bin/python; "+
				"create it (python3 -m venv %s) and install the dependencies", venv, venv)
		}
		return pythonEnv{python: py, virtualenv: venv}, nil
	}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		p, err := exec.LookPath(cmd)
		if err != nil {
			return pythonEnv{}, fmt.Errorf("PULUMI_PYTHON_CMD=%s: %w", cmd, err)
		}
		return pythonEnv{python: p}, nil
	}
	for _, name := range []string{"python3", "python"} {
		if p, err := exec.LookPath(name); err == nil {
			return pythonEnv{python: p}, nil
		}
	}
	return pythonEnv{}, errors.New("no python3 interpreter found on PATH; set the 'virtualenv' runtime option")
}

// environ returns base with the virtualenv activated (if any) and extra
// variables appended (later entries win).
func (pe pythonEnv) environ(base []string, extra ...string) []string {
	env := make([]string, 0, len(base)+len(extra)+3)
	for _, kv := range base {
		if pe.virtualenv != "" && (strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "VIRTUAL_ENV=") ||
			strings.HasPrefix(kv, "PYTHONHOME=")) {
			continue
		}
		env = append(env, kv)
	}
	if pe.virtualenv != "" {
		env = append(env,
			"VIRTUAL_ENV="+pe.virtualenv,
			"PATH="+filepath.Join(pe.virtualenv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	env = append(env, "PYTHONUNBUFFERED=1")
	return append(env, extra...)
}

func rootAndProgramDirs(info *pulumirpc.ProgramInfo, pwd string) (root, progDir, entry string) {
	root, progDir, entry = info.GetRootDirectory(), info.GetProgramDirectory(), info.GetEntryPoint()
	if progDir == "" {
		progDir = pwd
	}
	if root == "" {
		root = progDir
	}
	if entry == "" {
		entry = "."
	}
	return root, progDir, entry
}

// Run executes a Pulumi Python program.
func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	root, progDir, entry := rootAndProgramDirs(req.GetInfo(), req.GetPwd())
	ro, err := parseOptions(req.GetInfo().GetOptions())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	pe, err := resolvePython(root, ro)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args := []string{"-u", h.execScript}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engine())
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("organization", req.GetOrganization())
	add("root_directory", root)
	add("pwd", progDir)
	add("dry_run", fmt.Sprintf("%v", req.GetDryRun()))
	add("parallel", fmt.Sprint(req.GetParallel()))
	add("tracing", h.tracing)
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	config := req.GetConfig()
	if config == nil {
		config = map[string]string{} // the SDK expects a JSON object, never null
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("serializing config secret keys: %w", err)
	}

	logging.V(5).Infof("language host launching: %s %s", pe.python, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, pe.python, args...)
	cmd.Dir = progDir
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = pe.environ(os.Environ(),
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON))

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == bailExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run %s): %v", pe.python, err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// streamWriter forwards a plugin's stdout or stderr to the engine.
type streamWriter struct {
	mu     *sync.Mutex
	server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	buf := bytes.Clone(p)
	resp := &pulumirpc.RunPluginResponse{}
	if w.stderr {
		resp.Output = &pulumirpc.RunPluginResponse_Stderr{Stderr: buf}
	} else {
		resp.Output = &pulumirpc.RunPluginResponse_Stdout{Stdout: buf}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.server.Send(resp); err != nil {
		return 0, err
	}
	return len(p), nil
}

// RunPlugin runs a Python plugin, e.g. a policy pack: the program directory
// holds __main__.py (or the entry point) and PulumiPolicy.yaml.
func (h *languageHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	root, progDir, entry := rootAndProgramDirs(req.GetInfo(), req.GetPwd())
	ro, err := parseOptions(req.GetInfo().GetOptions())
	if err != nil {
		return err
	}
	pe, err := resolvePython(root, ro)
	if err != nil {
		return err
	}

	target := progDir
	if entry != "." {
		target = filepath.Join(progDir, entry)
	}
	args := append([]string{"-u", target}, req.GetArgs()...)

	base := os.Environ()
	base = append(base, req.GetEnv()...)

	mu := &sync.Mutex{}
	cmd := exec.CommandContext(server.Context(), pe.python, args...)
	cmd.Dir = req.GetPwd()
	if cmd.Dir == "" {
		cmd.Dir = progDir
	}
	cmd.Env = pe.environ(base)
	cmd.Stdout = streamWriter{mu: mu, server: server}
	cmd.Stderr = streamWriter{mu: mu, server: server, stderr: true}

	code := int32(0)
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return status.Errorf(codes.Internal, "running plugin %s with %s: %v", target, pe.python, err)
		}
		code = int32(exitErr.ExitCode()) //nolint:gosec // exit codes fit in int32
	}
	mu.Lock()
	defer mu.Unlock()
	return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}})
}

// InstallDependencies creates the virtualenv from requirements.txt if it is
// missing. An existing virtualenv is left untouched (the project manages it).
func (h *languageHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest,
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	root, _, _ := rootAndProgramDirs(req.GetInfo(), req.GetDirectory())
	ro, err := parseOptions(req.GetInfo().GetOptions())
	if err != nil {
		return err
	}
	out := func(msg string) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg)})
	}
	if ro.virtualenv == "" {
		return out("no 'virtualenv' runtime option: using the ambient python3; nothing to install\n")
	}
	if _, err := resolvePython(root, ro); err == nil {
		return out("virtualenv present; dependencies are managed by the project\n")
	}
	venv := ro.virtualenv
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(root, venv)
	}
	reqs := filepath.Join(root, "requirements.txt")
	if _, err := os.Stat(reqs); err != nil {
		return fmt.Errorf("virtualenv %s is missing and there is no %s to create it from", venv, reqs)
	}
	w := streamWriterInstall{server: server}
	steps := [][]string{
		{"python3", "-m", "venv", venv},
		{filepath.Join(venv, "bin", "python"), "-m", "pip", "install", "-r", reqs},
	}
	for _, step := range steps {
		if err := out("$ " + strings.Join(step, " ") + "\n"); err != nil {
			return err
		}
		cmd := exec.CommandContext(server.Context(), step[0], step[1:]...)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(step, " "), err)
		}
	}
	return nil
}

type streamWriterInstall struct {
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]
}

func (w streamWriterInstall) Write(p []byte) (int, error) {
	if err := w.server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: bytes.Clone(p)}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func programPython(info *pulumirpc.ProgramInfo) (pythonEnv, error) {
	root, _, _ := rootAndProgramDirs(info, "")
	ro, err := parseOptions(info.GetOptions())
	if err != nil {
		return pythonEnv{}, err
	}
	return resolvePython(root, ro)
}

func (h *languageHost) About(_ context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	pe, err := programPython(req.GetInfo())
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command(pe.python, "--version")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s --version: %w", pe.python, err)
	}
	return &pulumirpc.AboutResponse{
		Executable: pe.python,
		Version:    strings.TrimPrefix(strings.TrimSpace(out.String()), "Python "),
		Metadata:   map[string]string{"toolchain": "pip", "virtualenv": pe.virtualenv},
	}, nil
}

func (h *languageHost) GetProgramDependencies(
	_ context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	pe, err := programPython(req.GetInfo())
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(pe.python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check")
	cmd.Env = pe.environ(os.Environ())
	cmd.Stderr = io.Discard
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing packages with %s -m pip list: %w", pe.python, err)
	}
	var pkgs []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &pkgs); err != nil {
		return nil, fmt.Errorf("parsing pip list output: %w", err)
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return resp, nil
}
