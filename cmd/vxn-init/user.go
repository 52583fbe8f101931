package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// ident is the resolved identity the entrypoint runs as.
type ident struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Home     string   // from passwd, "" when unknown
}

type passwdEnt struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEnt struct {
	name    string
	gid     uint32
	members []string
}

// parsePasswd reads /etc/passwd lines; malformed lines are skipped as libc
// does, but a line with a bad number is an error naming file and line.
func parsePasswd(r io.Reader, file string) ([]passwdEnt, error) {
	var out []passwdEnt
	err := eachLine(r, func(n int, f []string) error {
		if len(f) < 7 {
			return nil
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s:%d: bad uid/gid %q/%q", file, n, f[2], f[3])
		}
		out = append(out, passwdEnt{name: f[0], uid: uid, gid: gid, home: f[5]})
		return nil
	})
	return out, err
}

func parseGroup(r io.Reader, file string) ([]groupEnt, error) {
	var out []groupEnt
	err := eachLine(r, func(n int, f []string) error {
		if len(f) < 4 {
			return nil
		}
		gid, err := parseID(f[2])
		if err != nil {
			return fmt.Errorf("%s:%d: bad gid %q", file, n, f[2])
		}
		var mem []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				mem = append(mem, m)
			}
		}
		out = append(out, groupEnt{name: f[0], gid: gid, members: mem})
		return nil
	})
	return out, err
}

func eachLine(r io.Reader, fn func(n int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if err := fn(n, strings.Split(l, ":")); err != nil {
			return err
		}
	}
	return sc.Err()
}

func parseID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err
}

// readDB opens file under root, returning (nil, nil) when it is missing.
func readDB[T any](root, file string, parse func(io.Reader, string) ([]T, error)) ([]T, error) {
	p, err := resolveIn(root, file)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f, file)
}

// resolveUser implements docker's -u USER[:GROUP] against the container's
// /etc/passwd and /etc/group (runc's GetExecUser rules):
//   - "" is root (0:0), with root's home and groups when listed;
//   - a name must exist in passwd; a number need not (gid 0 then);
//   - without an explicit group, the supplementary groups are those that
//     list the user name as a member; with one, the primary gid is that
//     group and there are no supplementary groups;
//   - a group name must exist in /etc/group, a number need not.
func resolveUser(root, spec string) (*ident, error) {
	userArg, groupArg, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupArg == "" {
		return nil, fmt.Errorf("user %q: empty group", spec)
	}
	if userArg == "" {
		if hasGroup {
			return nil, fmt.Errorf("user %q: empty user name", spec)
		}
		userArg = "0"
	}
	users, err := readDB(root, "/etc/passwd", parsePasswd)
	if err != nil {
		return nil, err
	}
	id := &ident{}
	matched := ""
	num, numErr := parseID(userArg)
	found := false
	for _, u := range users {
		if (numErr == nil && u.uid == num) || (numErr != nil && u.name == userArg) {
			id.UID, id.GID, id.Home, matched, found = u.uid, u.gid, u.home, u.name, true
			break
		}
	}
	if !found {
		if numErr != nil {
			return nil, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
		}
		id.UID = num
	}
	if !hasGroup && matched == "" {
		return id, nil
	}
	groups, err := readDB(root, "/etc/group", parseGroup)
	if err != nil {
		return nil, err
	}
	if hasGroup {
		gnum, gerr := parseID(groupArg)
		for _, g := range groups {
			if (gerr == nil && g.gid == gnum) || (gerr != nil && g.name == groupArg) {
				id.GID = g.gid
				return id, nil
			}
		}
		if gerr != nil {
			return nil, fmt.Errorf("unable to find group %s: no matching entries in group file", groupArg)
		}
		id.GID = gnum
		return id, nil
	}
	seen := map[uint32]bool{}
	for _, g := range groups {
		for _, m := range g.members {
			if m == matched && !seen[g.gid] {
				seen[g.gid] = true
				id.Groups = append(id.Groups, g.gid)
			}
		}
	}
	return id, nil
}

// resolveIn returns the host path of p (absolute, inside the container)
// under root, following symlinks as if root were "/" so that no symlink in
// the image can point the init outside it. We resolve ourselves because the
// init is not chrooted (only the entrypoint is) and filepath.EvalSymlinks
// would follow absolute links on the initramfs.
func resolveIn(root, p string) (string, error) {
	const maxLinks = 40
	links := 0
	done := "/"
	rest := strings.Split(path.Clean("/"+p), "/")
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, c)
		st, err := os.Lstat(root + next)
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			done = next // missing components are fine: the caller decides
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		t, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(t, "/") {
			done = "/"
		}
		rest = append(strings.Split(t, "/"), rest...)
	}
	return path.Join(root, done), nil
}
