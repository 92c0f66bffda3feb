package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"builds/app"
)

// cmdUser implements "builds user ...".
func (m *Main) cmdUser(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("user: want add, list, passwd or key")
	}
	sub, args := args[0], args[1:]
	fs := m.flagSet("user " + sub)
	email := fs.String("email", "", "email address")
	admin := fs.Bool("admin", false, "make the user an administrator")
	pwStdin := fs.Bool("password-stdin", false, "read a password from standard input")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		if len(pos) != 1 {
			return usagef("user add NAME --email E [--admin] [--password-stdin]")
		}
		if *email == "" {
			return usagef("user add: --email is required")
		}
		var pw string
		if *pwStdin {
			if pw, err = readSecretLine(m.Stdin); err != nil {
				return err
			}
		}
		return m.run(ctx, func(svc *app.Service) error {
			u, err := svc.CreateUser(ctx, pos[0], *email, *admin, pw)
			if err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "created user %s (id %d)\n", u.Username, u.ID)
			return nil
		})
	case "list":
		return m.run(ctx, func(svc *app.Service) error {
			users, err := m.DB.FindUsers(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tEMAIL\tADMIN\tCREATED")
			for _, u := range users {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s\n", u.ID, u.Username, u.Email, u.Admin, u.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		})
	case "passwd":
		if len(pos) != 1 {
			return usagef("user passwd NAME (new password on standard input)")
		}
		pw, err := readSecretLine(m.Stdin)
		if err != nil {
			return err
		}
		return m.run(ctx, func(svc *app.Service) error {
			u, err := svc.UserByName(ctx, pos[0])
			if err != nil {
				return err
			}
			if err := svc.SetPassword(ctx, u.ID, pw); err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "password changed for %s\n", u.Username)
			return nil
		})
	case "key":
		if len(pos) < 3 || pos[0] != "add" {
			return usagef("user key add NAME 'ssh-ed25519 AAAA... comment'")
		}
		return m.run(ctx, func(svc *app.Service) error {
			u, err := svc.UserByName(ctx, pos[1])
			if err != nil {
				return err
			}
			k, err := svc.AddSSHKey(ctx, u.ID, strings.Join(pos[2:], " "))
			if err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "added SSH key %s for %s\n", k.Fingerprint, u.Username)
			return nil
		})
	}
	return usagef("user: unknown subcommand %q", sub)
}

// cmdToken implements "builds token ...".
func (m *Main) cmdToken(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("token: want create, list or revoke")
	}
	sub, args := args[0], args[1:]
	fs := m.flagSet("token " + sub)
	grants := fs.String("grants", "", `grants, e.g. "JOBS:RW LOGS:RO" (default: all)`)
	expires := fs.String("expires", "", "lifetime, e.g. 90d (default: never)")
	comment := fs.String("comment", "", "comment")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if len(pos) != 1 {
			return usagef(`token create NAME [--grants "JOBS:RW ..."] [--expires 90d] [--comment C]`)
		}
		if _, err := app.ParseGrants(*grants); err != nil {
			return err
		}
		exp, err := app.ParseExpiry(*expires)
		if err != nil {
			return err
		}
		return m.run(ctx, func(svc *app.Service) error {
			u, err := svc.UserByName(ctx, pos[0])
			if err != nil {
				return err
			}
			secret, t, err := svc.CreateToken(ctx, u.ID, *grants, exp, *comment)
			if err != nil {
				return err
			}
			fmt.Fprintln(m.Stdout, secret)
			fmt.Fprintf(m.Stderr, "token %d for %s (grants: %s, expires: %s); it is shown only this once\n", t.ID, u.Username, grantsText(t.Grants), expiryText(t.Expires))
			return nil
		})
	case "list":
		if len(pos) != 1 {
			return usagef("token list NAME")
		}
		return m.run(ctx, func(svc *app.Service) error {
			u, err := svc.UserByName(ctx, pos[0])
			if err != nil {
				return err
			}
			tokens, err := m.DB.FindTokens(ctx, u.ID)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tGRANTS\tCREATED\tEXPIRES\tLAST USED\tCOMMENT")
			for _, t := range tokens {
				last := "never"
				if t.LastUsed != nil {
					last = t.LastUsed.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, grantsText(t.Grants), t.Created.Format(time.RFC3339), expiryText(t.Expires), last, t.Comment)
			}
			return tw.Flush()
		})
	case "revoke":
		if len(pos) != 1 {
			return usagef("token revoke ID")
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || id <= 0 {
			return usagef("token revoke: %q is not a token id", pos[0])
		}
		return m.run(ctx, func(svc *app.Service) error {
			if err := svc.RevokeToken(app.SystemContext(ctx), id); err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "revoked token %d\n", id)
			return nil
		})
	}
	return usagef("token: unknown subcommand %q", sub)
}

func grantsText(g string) string {
	if g == "" {
		return "all"
	}
	return g
}

func expiryText(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}

// run opens the service (flags already parsed), runs fn and closes.
func (m *Main) run(ctx context.Context, fn func(*app.Service) error) error {
	if err := m.open(ctx); err != nil {
		return err
	}
	defer m.Close()
	return fn(m.Service)
}

// readSecretLine reads one line (a password) from r.
func readSecretLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no password on standard input")
	}
	return line, nil
}
