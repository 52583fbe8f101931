package oci

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func strp(s string) *string { return &s }

// The cases follow docker's documented rules ("docker run" reference:
// ENTRYPOINT, CMD, ENV, WORKDIR, USER defaults and overrides).
func TestResolve(t *testing.T) {
	defPath := "PATH=" + DefaultPath
	img := v1.Config{
		Entrypoint: []string{"/entry", "-x"},
		Cmd:        []string{"serve", "--port=80"},
		Env:        []string{"PATH=/img/bin", "A=1", "B=2"},
		WorkingDir: "/app",
		User:       "app",
	}
	hostEnv := map[string]string{"FROMHOST": "h", "EMPTYHOST": ""}
	lookup := func(k string) (string, bool) { v, ok := hostEnv[k]; return v, ok }
	tests := []struct {
		name string
		cfg  v1.Config
		opt  RunOptions
		want Process
		err  string
	}{
		{name: "image defaults", cfg: img,
			want: Process{Args: []string{"/entry", "-x", "serve", "--port=80"}, Env: img.Env, Cwd: "/app", User: "app"}},
		{name: "CMD args replace image Cmd, keep Entrypoint", cfg: img, opt: RunOptions{Cmd: []string{"shell", "a b"}},
			want: Process{Args: []string{"/entry", "-x", "shell", "a b"}, Env: img.Env, Cwd: "/app", User: "app"}},
		{name: "--entrypoint drops image Cmd", cfg: img, opt: RunOptions{Entrypoint: strp("/bin/sh")},
			want: Process{Args: []string{"/bin/sh"}, Env: img.Env, Cwd: "/app", User: "app"}},
		{name: "--entrypoint with CMD args", cfg: img, opt: RunOptions{Entrypoint: strp("/bin/sh"), Cmd: []string{"-c", "echo hi"}},
			want: Process{Args: []string{"/bin/sh", "-c", "echo hi"}, Env: img.Env, Cwd: "/app", User: "app"}},
		{name: "--entrypoint with spaces is one argv element", cfg: img, opt: RunOptions{Entrypoint: strp("/my prog")},
			want: Process{Args: []string{"/my prog"}, Env: img.Env, Cwd: "/app", User: "app"}},
		{name: `--entrypoint "" resets, CMD args run`, cfg: img, opt: RunOptions{Entrypoint: strp(""), Cmd: []string{"ls", "-l"}},
			want: Process{Args: []string{"ls", "-l"}, Env: img.Env, Cwd: "/app", User: "app"}},
		{name: `--entrypoint "" without args: nothing to run`, cfg: img, opt: RunOptions{Entrypoint: strp("")}, err: "no command specified"},
		{name: "image without entrypoint or cmd", cfg: v1.Config{}, err: "no command specified"},
		{name: "Cmd only image", cfg: v1.Config{Cmd: []string{"/bin/sh"}},
			want: Process{Args: []string{"/bin/sh"}, Env: []string{defPath}, Cwd: "/"}},
		{name: "PATH default when image has none", cfg: v1.Config{Cmd: []string{"x"}, Env: []string{"A=1"}},
			want: Process{Args: []string{"x"}, Env: []string{"A=1", defPath}, Cwd: "/"}},
		{name: "PATH from -e wins over default", cfg: v1.Config{Cmd: []string{"x"}}, opt: RunOptions{Env: []string{"PATH=/p"}},
			want: Process{Args: []string{"x"}, Env: []string{"PATH=/p"}, Cwd: "/"}},
		{name: "env override order: image < env-file < -e, in place", cfg: img,
			opt: RunOptions{EnvFiles: [][]string{{"A=file1", "C=file"}, {"A=file2"}}, Env: []string{"B=flag", "C=flag", "D=new"}},
			want: Process{Args: []string{"/entry", "-x", "serve", "--port=80"},
				Env: []string{"PATH=/img/bin", "A=file2", "B=flag", "C=flag", "D=new"}, Cwd: "/app", User: "app"}},
		{name: "later -e wins", cfg: img, opt: RunOptions{Env: []string{"A=x", "A=y"}},
			want: Process{Args: []string{"/entry", "-x", "serve", "--port=80"}, Env: []string{"PATH=/img/bin", "A=y", "B=2"}, Cwd: "/app", User: "app"}},
		{name: "value with = and empty value", cfg: v1.Config{Cmd: []string{"x"}}, opt: RunOptions{Env: []string{"Q=a=b", "E="}},
			want: Process{Args: []string{"x"}, Env: []string{"Q=a=b", "E=", defPath}, Cwd: "/"}},
		{name: "-e K copies from host, unset dropped", cfg: v1.Config{Cmd: []string{"x"}},
			opt:  RunOptions{Env: []string{"FROMHOST", "EMPTYHOST", "UNSET"}, LookupEnv: lookup},
			want: Process{Args: []string{"x"}, Env: []string{"FROMHOST=h", "EMPTYHOST=", defPath}, Cwd: "/"}},
		{name: "-e =x is invalid", cfg: v1.Config{Cmd: []string{"x"}}, opt: RunOptions{Env: []string{"=x"}}, err: "empty name"},
		{name: "-w overrides", cfg: img, opt: RunOptions{WorkDir: "/tmp/../srv/"},
			want: Process{Args: []string{"/entry", "-x", "serve", "--port=80"}, Env: img.Env, Cwd: "/srv", User: "app"}},
		{name: "-w must be absolute", cfg: img, opt: RunOptions{WorkDir: "rel"}, err: "absolute path"},
		{name: "relative image WorkingDir is from /", cfg: v1.Config{Cmd: []string{"x"}, WorkingDir: "w"},
			want: Process{Args: []string{"x"}, Env: []string{defPath}, Cwd: "/w"}},
		{name: "-u overrides", cfg: img, opt: RunOptions{User: "1000:1000"},
			want: Process{Args: []string{"/entry", "-x", "serve", "--port=80"}, Env: img.Env, Cwd: "/app", User: "1000:1000"}},
		{name: "bad -u", cfg: img, opt: RunOptions{User: "a:"}, err: "invalid user"},
		{name: "bad -u colon", cfg: img, opt: RunOptions{User: ":g"}, err: "invalid user"},
		{name: "-t adds TERM", cfg: v1.Config{Cmd: []string{"x"}}, opt: RunOptions{TTY: true},
			want: Process{Args: []string{"x"}, Env: []string{defPath, "TERM=xterm"}, Cwd: "/"}},
		{name: "-t keeps TERM", cfg: v1.Config{Cmd: []string{"x"}, Env: []string{"TERM=vt100"}}, opt: RunOptions{TTY: true},
			want: Process{Args: []string{"x"}, Env: []string{"TERM=vt100", defPath}, Cwd: "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.cfg.Env
			origCopy := append([]string{}, orig...)
			got, err := Resolve(tt.cfg, tt.opt)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Resolve error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Resolve (-want +got):\n%s", d)
			}
			if !cmp.Equal(orig, origCopy, cmpopts.EquateEmpty()) {
				t.Errorf("Resolve modified the image config's Env: %q", orig)
			}
		})
	}
	if _, err := Resolve(v1.Config{}, RunOptions{}); !errors.Is(err, ErrNoCommand) {
		t.Errorf("want ErrNoCommand, got %v", err)
	}
}

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{name: "basic", in: "A=1\nB=two words\n", want: []string{"A=1", "B=two words"}},
		{name: "comments and blanks", in: "# c\n\n   \nA=1\n  # indented comment\n", want: []string{"A=1"}},
		{name: "quotes kept verbatim", in: `A="q"` + "\nB='s'\n", want: []string{`A="q"`, `B='s'`}},
		{name: "leading space trimmed, trailing kept", in: "  A=1 \n", want: []string{"A=1 "}},
		{name: "bare name", in: "HOME\n", want: []string{"HOME"}},
		{name: "BOM", in: "\xef\xbb\xbfA=1\n", want: []string{"A=1"}},
		{name: "CRLF value keeps CR? no: scanner drops it", in: "A=1\r\n", want: []string{"A=1"}},
		{name: "no final newline", in: "A=1", want: []string{"A=1"}},
		{name: "space in name", in: "A B=1\n", err: "envs:1: variable name \"A B\" contains white space"},
		{name: "empty name", in: "ok=1\n=1\n", err: "envs:2: no variable name"},
		{name: "bad utf8", in: "A=\xff\n", err: "envs:1: invalid UTF-8"},
		{name: "line beyond the scanner's first buffer", in: "L=" + strings.Repeat("x", 70000) + "\n", want: []string{"L=" + strings.Repeat("x", 70000)}},
		{name: "line over 1 MiB", in: "L=" + strings.Repeat("x", 1<<20) + "\n", err: "envs: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnvFile("envs", strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// FuzzParseEnvFile: inputs over 1 KiB are passed over and long lines are
// TestParseEnvFile's (a 70,000-byte seed here made every new input cost Go's
// minimiser, quadratic in the input's length, its full minute: it stalled).
func FuzzParseEnvFile(f *testing.F) {
	for _, s := range []string{"A=1\n", "# x\nB\n", "\xef\xbb\xbfC=\"q\"\r\n", "A B=1", "=", "\x00=1", "L=" + strings.Repeat("x", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 1<<10 {
			return
		}
		env, err := ParseEnvFile("fuzz", strings.NewReader(s))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("error does not name the source: %v", err)
			}
			return
		}
		p, err := Resolve(v1.Config{Cmd: []string{"x"}}, RunOptions{EnvFiles: [][]string{env}})
		if err != nil {
			t.Fatalf("Resolve rejected a parsed env file %q: %v", env, err)
		}
		if !hasKey(p.Env, "PATH") {
			t.Fatal("no PATH")
		}
	})
}
