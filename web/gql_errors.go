package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"

	"builds/app"
)

// gqlFieldError is what resolvers hand to graphql-go: a message that is safe
// to show and the GraphQL error code (extensions.code).
type gqlFieldError struct {
	code string
	msg  string
}

func (e *gqlFieldError) Error() string { return e.msg }

// Extensions implements gqlerrors.ExtendedError.
func (e *gqlFieldError) Extensions() map[string]any { return map[string]any{"code": e.code} }

// errorCodes is the one table from application error codes to what
// clients see: the HTTP status and the GraphQL extension code. Any other
// error is internal (500, INTERNAL) and is logged where it is answered.
var errorCodes = map[string]struct {
	status int
	gql    string
}{
	app.EINVALID:      {http.StatusBadRequest, "BAD_USER_INPUT"},
	app.ENOTFOUND:     {http.StatusNotFound, "NOT_FOUND"},
	app.EUNAUTHORIZED: {http.StatusUnauthorized, "UNAUTHENTICATED"},
	app.EFORBIDDEN:    {http.StatusForbidden, "FORBIDDEN"},
	app.ECONFLICT:     {http.StatusConflict, "CONFLICT"},
}

// gqlCode maps an error to its GraphQL extension code.
func gqlCode(err error) string {
	if c, ok := errorCodes[app.ErrorCode(err)]; ok {
		return c.gql
	}
	return "INTERNAL"
}

// httpStatus maps an error to its HTTP status.
func httpStatus(err error) int {
	if c, ok := errorCodes[app.ErrorCode(err)]; ok {
		return c.status
	}
	return http.StatusInternalServerError
}

// gqlResolver is a field gqlResolver that may return any error; wrap turns its
// errors into fieldErrors, logging internal ones.
type gqlResolver func(p graphql.ResolveParams) (any, error)

func (g *schemaBuilder) wrap(fn gqlResolver) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) {
		v, err := fn(p)
		if err != nil {
			return nil, g.publicError(p, err)
		}
		return v, nil
	}
}

func (g *schemaBuilder) publicError(p graphql.ResolveParams, err error) error {
	if fe, ok := err.(*gqlFieldError); ok {
		return fe
	}
	code := gqlCode(err)
	if code == "INTERNAL" {
		g.srv.Log.Error("graphql gqlResolver", "field", p.Info.ParentType.Name()+"."+p.Info.FieldName,
			"path", fmt.Sprint(p.Info.Path.AsArray()), "err", err)
	}
	return &gqlFieldError{code: code, msg: app.ErrorMessage(err)}
}

// errAuthRequired is returned for anonymous requests to anything but
// Query.version.
func errAuthRequired() error {
	return &gqlFieldError{code: "UNAUTHENTICATED",
		msg: "Authorization header is required. Expected 'Authorization: Bearer [token]'"}
}

// checkAccess enforces @access(scope, kind) for the caller through the
// one grant check, app.CheckGrant; the API words a missing identity its
// own way.
func checkAccess(ctx context.Context, scope app.Scope, kind app.Access) error {
	return directiveError(app.CheckGrant(ctx, scope, kind))
}

// directiveError turns an access refusal into the API's field error.
func directiveError(err error) error {
	switch app.ErrorCode(err) {
	case "":
		return nil
	case app.EUNAUTHORIZED:
		return errAuthRequired()
	}
	return &gqlFieldError{code: gqlCode(err), msg: app.ErrorMessage(err)}
}

// access wraps a gqlResolver with @access(scope, kind).
func (g *schemaBuilder) access(scope app.Scope, kind app.Access, fn gqlResolver) graphql.FieldResolveFn {
	return g.wrap(func(p graphql.ResolveParams) (any, error) {
		if err := checkAccess(p.Context, scope, kind); err != nil {
			return nil, err
		}
		return fn(p)
	})
}

// authed wraps a gqlResolver that needs an authenticated user but no scope
// (webhook subscriptions).
func (g *schemaBuilder) authed(fn gqlResolver) graphql.FieldResolveFn {
	return g.wrap(func(p graphql.ResolveParams) (any, error) {
		if app.UserFromContext(p.Context) == nil {
			return nil, errAuthRequired()
		}
		return fn(p)
	})
}

// worker wraps a @worker gqlResolver: build runners only, never user
// tokens (app.CheckWorker).
func (g *schemaBuilder) worker(fn gqlResolver) graphql.FieldResolveFn {
	return g.wrap(func(p graphql.ResolveParams) (any, error) {
		if err := directiveError(app.CheckWorker(p.Context)); err != nil {
			return nil, err
		}
		return fn(p)
	})
}

// formatErrors renders graphql-go's errors. Errors raised by our resolvers
// keep their message and code; any other error during execution (a panic,
// a null in a non-null field) is a bug: it is logged and shown as
// "internal error". Errors before execution (syntax, validation,
// variables) get defaultCode.
func (s *Server) formatErrors(ctx context.Context, errs []error, defaultCode string) []gqlErrorJSON {
	out := make([]gqlErrorJSON, 0, len(errs))
	for _, err := range errs {
		fe := gqlerrors.FormatError(err)
		e := gqlErrorJSON{Message: fe.Message, Path: fe.Path}
		for _, l := range fe.Locations {
			e.Locations = append(e.Locations, gqlLocation{Line: l.Line, Column: l.Column})
		}
		code := defaultCode
		switch f, ok := originalError(fe).(*gqlFieldError); {
		case ok:
			e.Message, code = f.msg, f.code
		case ctx.Err() != nil && isContextError(fe.Message):
			e.Message, code = fmt.Sprintf("query took longer than %s and was stopped", queryTimeout), "TIMEOUT"
		case len(fe.Path) > 0:
			s.Log.Error("graphql execution", "path", fmt.Sprint(fe.Path), "err", fe.Message)
			e.Message, code = "internal error", "INTERNAL"
		default:
			// Syntax errors append an excerpt of the query after a
			// blank line; the location already points there.
			e.Message, _, _ = strings.Cut(e.Message, "\n\n")
		}
		e.Extensions = map[string]string{"code": code}
		out = append(out, e)
	}
	return out
}

func isContextError(msg string) bool {
	return msg == context.DeadlineExceeded.Error() || msg == context.Canceled.Error()
}

// originalError digs the innermost error out of graphql-go's wrappers.
func originalError(err error) error {
	for i := 0; i < 10; i++ {
		switch e := err.(type) {
		case gqlerrors.FormattedError:
			if e.OriginalError() == nil {
				return e
			}
			err = e.OriginalError()
		case *gqlerrors.Error:
			if e.OriginalError == nil {
				return e
			}
			err = e.OriginalError
		default:
			return err
		}
	}
	return err
}
