package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// euid is the effective user id of this process (-1 where there is none); tests replace it
// to act as root.
var euid = os.Geteuid

// checkStateOwner refuses, run as root, a command that writes in a state folder (spool,
// mailbox store, audit log) belonging to another account: the files it would create there
// would be root's, and the service running as that account would then fail on them with
// "permission denied". Acting as the owner instead (setuid) would be a privilege change
// hidden in a tool; saying who to run as is explicit. A folder not created yet is judged by
// the folder it would be created in. command is the command line the hint repeats after
// "mssante" ("bal …").
func checkStateOwner(command string, dirs ...string) error {
	if euid() != 0 {
		return nil
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		at, fi := existingAncestor(d)
		if fi == nil {
			continue
		}
		uid, ok := fileUID(fi)
		if !ok || uid == 0 {
			continue
		}
		name := userName(uid)
		where := at
		if at != d {
			where = fmt.Sprintf("%s (where %s would be created)", at, d)
		}
		return fmt.Errorf("the state folder %s belongs to %s, and files written there as root could not be opened by %s: run as %s (sudo -u %s mssante %s)",
			where, name, name, name, name, command)
	}
	return nil
}

// existingAncestor returns dir, or its nearest ancestor that exists, with its FileInfo (nil
// when none could be read).
func existingAncestor(dir string) (string, os.FileInfo) {
	p, err := filepath.Abs(dir)
	if err != nil {
		return dir, nil
	}
	for {
		fi, err := os.Stat(p)
		if err == nil {
			return p, fi
		}
		if !errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p, nil
		}
		p = parent
	}
}

// userName is the login of uid, or "#uid" (the form sudo -u takes) when it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return "#" + strconv.Itoa(uid)
}
