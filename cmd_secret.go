package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"builds/app"
)

// runSecret implements "builds secret add|list". Secrets are created here
// (and in the web UI); the API only lists and shares them. ctx acts as the
// system; listing impersonates the named user so the usual rules apply.
func runSecret(ctx context.Context, svc *app.Service, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "owner of the secret")
	typ := fs.String("type", "", "ssh, pgp or file")
	name := fs.String("name", "", "name to refer to the secret by in manifests")
	path := fs.String("path", "", "where a file secret is written in the guest")
	mode := fs.String("mode", "", "octal file mode of a file secret (default 0600)")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("secret: want add or list")
	}
	sub := pos[0]
	if sub != "add" && sub != "list" {
		return usagef("secret: unknown subcommand %q (want add or list)", sub)
	}
	if len(pos) > 1 {
		return usagef("secret %s: unexpected argument %q", sub, pos[1])
	}
	if *user == "" {
		return usagef("secret %s: --user is required", sub)
	}
	u, err := svc.UserByName(ctx, strings.TrimPrefix(*user, "~"))
	if app.ErrorCode(err) == app.ENOTFOUND {
		return fmt.Errorf("no such user %q", *user)
	} else if err != nil {
		return fmt.Errorf("find user: %w", err)
	}
	if sub == "list" {
		if *typ != "" || *name != "" || *path != "" || *mode != "" {
			return usagef("secret list takes only --user")
		}
		return listSecrets(app.NewContextWithAuth(ctx, &app.Auth{Kind: app.AuthSession, User: u}), svc, stdout)
	}
	in, err := secretInput(*typ, *name, *path, *mode, stdin)
	if err != nil {
		return err
	}
	sec, err := svc.CreateSecret(ctx, u.ID, *in)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, sec.UUID)
	fmt.Fprintf(stderr, "added %s secret %s for %s\n", typeLabel(sec.Type), sec.Ref(), u.CanonicalName())
	return nil
}

// secretInput builds and checks a new secret from the flags and stdin.
func secretInput(typ, name, path, mode string, stdin io.Reader) (*app.SecretInput, error) {
	in := &app.SecretInput{Name: name}
	switch typ {
	case "ssh":
		in.Type = app.SecretSSHKey
	case "pgp":
		in.Type = app.SecretPGPKey
	case "file":
		in.Type = app.SecretFile
	case "":
		return nil, usagef("secret add: --type is required (ssh, pgp or file)")
	default:
		return nil, usagef("secret add: unknown --type %q (want ssh, pgp or file)", typ)
	}
	if in.Type == app.SecretFile {
		if path == "" {
			return nil, usagef("secret add: --type file needs --path")
		}
		in.Path, in.Mode = path, 0o600
		if mode != "" {
			m, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || m > 0o7777 {
				return nil, usagef("secret add: --mode %q is not an octal file mode like 0600", mode)
			}
			in.Mode = int(m)
		}
	} else if path != "" || mode != "" {
		return nil, usagef("secret add: --path and --mode only apply to --type file")
	}
	data, err := io.ReadAll(io.LimitReader(stdin, app.MaxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("read secret from standard input: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("standard input is empty: pipe the secret in, e.g. builds secret add ... < FILE")
	}
	if in.Type == app.SecretSSHKey || in.Type == app.SecretPGPKey {
		// Keys pasted from Windows editors, and keys without a final
		// newline, break ssh and gpg in the guest.
		data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		if !bytes.HasSuffix(data, []byte("\n")) {
			data = append(data, '\n')
		}
	}
	in.Data = data
	if err := app.ValidateSecret(in); err != nil {
		return nil, err
	}
	return in, nil
}

func listSecrets(ctx context.Context, svc *app.Service, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UUID\tTYPE\tNAME\tFILE\tFROM\tCREATED")
	var cursor *string
	for {
		page, err := svc.Secrets(ctx, cursor)
		if err != nil {
			return err
		}
		for _, s := range page.Secrets {
			name, file, from := "-", "-", "-"
			if s.Name != nil && *s.Name != "" {
				name = *s.Name
			}
			if s.Path != nil && s.Mode != nil {
				file = fmt.Sprintf("%s (%04o)", *s.Path, *s.Mode)
			}
			if s.FromUserID != nil {
				if fu, err := svc.User(ctx, *s.FromUserID); err == nil {
					from = fu.CanonicalName()
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.UUID, typeLabel(s.Type), name, file, from, s.Created.UTC().Format(time.RFC3339))
		}
		if page.Cursor == "" {
			break
		}
		cursor = &page.Cursor
	}
	return tw.Flush()
}

func typeLabel(t app.SecretType) string {
	switch t {
	case app.SecretSSHKey:
		return "ssh"
	case app.SecretPGPKey:
		return "pgp"
	}
	return "file"
}
