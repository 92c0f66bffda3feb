package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// Limits that keep one request from tying up the server. The request body
// as a whole is limited by [limits] upload-size; what a query may cost
// and return is in gql_cost.go.
const (
	maxQueryBytes = 64 << 10 // query text
	maxDepth      = 15       // nested selection sets
	maxFields     = 1000     // field selections after expanding fragments
	queryTimeout  = 30 * time.Second
)

// apiOnce holds the GraphQL schema, built on first use so that both the
// HTTP handler and ExecuteWebhookQuery can reach it whatever the order.
type apiOnce struct {
	once   sync.Once
	schema graphql.Schema
	err    error

	// Validated documents by query text (gql_doc.go): validation costs
	// more than running a small query.
	mu   sync.Mutex
	docs map[string]*gqlDoc

	// bufs recycles the buffers responses are written in (gqlBuf): a
	// page of jobs is some KiB of JSON on every request.
	bufs sync.Pool
}

// gqlBuf returns an empty buffer for a response.
func (a *apiOnce) gqlBuf() []byte {
	if b, ok := a.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 8<<10)
}

// recycle takes back a buffer from gqlBuf once nothing refers to it.
func (a *apiOnce) recycle(b []byte) {
	if b != nil && cap(b) <= 1<<20 { // huge answers are rare: let them go
		a.bufs.Put(&b)
	}
}

const maxCachedDocs = 256

func (a *apiOnce) cachedDoc(query string) *gqlDoc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.docs[query]
}

func (a *apiOnce) cacheDoc(query string, doc *gqlDoc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.docs == nil {
		a.docs = map[string]*gqlDoc{}
	}
	if len(a.docs) >= maxCachedDocs {
		for k := range a.docs { // evict an arbitrary entry
			delete(a.docs, k)
			break
		}
	}
	a.docs[query] = doc
}

// graphQLSchema returns the server's schema. Building it can only fail
// through a programming error, which the tests catch.
func (s *Server) graphQLSchema() (*graphql.Schema, error) {
	s.api.once.Do(func() {
		s.api.schema, s.api.err = newSchema(s)
	})
	if s.api.err != nil {
		return nil, fmt.Errorf("build graphql schema: %w", s.api.err)
	}
	return &s.api.schema, nil
}

// gqlRequest is a GraphQL request as sent over HTTP.
type gqlRequest struct {
	Query         string         `json:"query"`
	Variables     map[string]any `json:"variables"`
	OperationName string         `json:"operationName"`
}

// gqlResponse is the JSON body of every /query answer.
type gqlResponse struct {
	Data   any            `json:"data"`
	Errors []gqlErrorJSON `json:"errors,omitempty"`

	buf []byte // from gqlBuf: the memory of Data, if runQuery wrote it
}

type gqlErrorJSON struct {
	Message    string            `json:"message"`
	Locations  []gqlLocation     `json:"locations,omitempty"`
	Path       []any             `json:"path,omitempty"`
	Extensions map[string]string `json:"extensions"`
}

type gqlLocation struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// requestError is a problem with the HTTP request itself (not the GraphQL
// document); it is answered with a 4xx status.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: "BAD_REQUEST", msg: fmt.Sprintf(format, args...)}
}

// handleQuery serves POST and GET /query.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	req, cleanup, err := s.readGraphQLRequest(w, r)
	defer cleanup()
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			s.Log.Error("read graphql request", "err", err)
			re = &requestError{status: http.StatusInternalServerError, code: "INTERNAL", msg: "internal error"}
		}
		writeGraphQLError(w, re.status, re.code, re.msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	resp, rerr := s.executeGraphQL(ctx, req, execOptions{allowMutations: r.Method == http.MethodPost})
	if rerr != nil {
		if rerr.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", "POST")
		}
		s.Service.Metrics.GraphQLError(rerr.code)
		writeGraphQLError(w, rerr.status, rerr.code, rerr.msg)
		return
	}
	for _, e := range resp.Errors {
		s.Service.Metrics.GraphQLError(e.Extensions["code"])
	}
	body := s.api.gqlBuf()
	writeGraphQLResponse(w, http.StatusOK, resp, body)
	s.api.recycle(body)
	s.api.recycle(resp.buf)
}

// writeGraphQLError answers with a request-level error in the GraphQL shape.
func writeGraphQLError(w http.ResponseWriter, status int, code, msg string) {
	writeGraphQLResponse(w, status, &gqlResponse{Errors: []gqlErrorJSON{{Message: msg, Extensions: map[string]string{"code": code}}}}, nil)
}

// readGraphQLRequest decodes a request from the query string (GET), a JSON
// body, or a GraphQL multipart request (file uploads). cleanup removes any
// temporary gqlUpload files and is always safe to call.
func (s *Server) readGraphQLRequest(w http.ResponseWriter, r *http.Request) (*gqlRequest, func(), error) {
	cleanup := func() {}
	if r.Method == http.MethodGet {
		req, err := readGETRequest(r)
		return req, cleanup, err
	}
	if limit := s.config().Limits.UploadSize; limit > 0 {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "multipart/form-data":
		return s.readMultipartRequest(r)
	case "", "application/json", "application/graphql-response+json":
	default:
		return nil, cleanup, &requestError{status: http.StatusUnsupportedMediaType, code: "BAD_REQUEST",
			msg: fmt.Sprintf("unsupported Content-Type %q: send application/json or multipart/form-data", mediaType)}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, cleanup, bodyError(err)
	}
	req, err := decodeJSONRequest(body)
	return req, cleanup, err
}

// bodyError turns a body read failure into a request error.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &requestError{status: http.StatusRequestEntityTooLarge, code: "BAD_REQUEST",
			msg: fmt.Sprintf("request body is too large: the limit is %d bytes", mbe.Limit)}
	}
	return badRequest("read request body: %v", err)
}

// decodeJSONRequest parses {"query", "variables", "operationName"}.
// Variables may be null, an object, or (as some clients send them) a JSON
// string holding an object.
func decodeJSONRequest(body []byte) (*gqlRequest, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, badRequest("request body is empty: send a JSON object with a \"query\"")
	}
	if body[0] == '[' {
		return nil, badRequest("batched requests are not supported: send one JSON object per request")
	}
	var raw struct {
		Query         *string         `json:"query"`
		Variables     json.RawMessage `json:"variables"`
		OperationName *string         `json:"operationName"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, badRequest("invalid JSON in request body: %v", err)
	}
	if raw.Query == nil || strings.TrimSpace(*raw.Query) == "" {
		return nil, badRequest("no GraphQL query in the request: the \"query\" member is missing or empty")
	}
	vars, err := decodeVariables(raw.Variables)
	if err != nil {
		return nil, err
	}
	req := &gqlRequest{Query: *raw.Query, Variables: vars}
	if raw.OperationName != nil {
		req.OperationName = *raw.OperationName
	}
	return req, nil
}

func decodeVariables(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest("invalid \"variables\": %v", err)
		}
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		raw = json.RawMessage(s)
	}
	var vars map[string]any
	if err := json.Unmarshal(raw, &vars); err != nil {
		return nil, badRequest("invalid \"variables\": must be a JSON object or null")
	}
	return vars, nil
}

func readGETRequest(r *http.Request) (*gqlRequest, error) {
	q := r.URL.Query()
	query := q.Get("query")
	if strings.TrimSpace(query) == "" {
		return nil, badRequest("no GraphQL query in the request: pass it in the \"query\" parameter")
	}
	vars, err := decodeVariables(json.RawMessage(q.Get("variables")))
	if err != nil {
		return nil, err
	}
	return &gqlRequest{Query: query, Variables: vars, OperationName: q.Get("operationName")}, nil
}

// execOptions says what an execution may do.
type execOptions struct {
	allowMutations bool // false for GET requests and webhook queries
	mutationError  string
}

// executeGraphQL parses, checks and runs one request. A non-nil
// requestError means the request could not be run at all (HTTP status);
// GraphQL errors are in the response.
func (s *Server) executeGraphQL(ctx context.Context, req *gqlRequest, opt execOptions) (*gqlResponse, *requestError) {
	if len(req.Query) > maxQueryBytes {
		return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: "QUERY_TOO_LARGE",
			msg: fmt.Sprintf("query is too large: %d bytes, the limit is %d bytes", len(req.Query), maxQueryBytes)}
	}
	schema, err := s.graphQLSchema()
	if err != nil {
		s.Log.Error("graphql schema", "err", err)
		return nil, &requestError{status: http.StatusInternalServerError, code: "INTERNAL", msg: "internal error"}
	}
	d, resp := s.validDocument(ctx, schema, req.Query)
	if resp != nil {
		return resp, nil
	}
	op := findOperation(d.doc, req.OperationName)
	if op != nil && op.Operation != ast.OperationTypeQuery && !opt.allowMutations {
		if opt.mutationError != "" {
			return &gqlResponse{Errors: []gqlErrorJSON{{Message: opt.mutationError, Extensions: map[string]string{"code": "FORBIDDEN"}}}}, nil
		}
		return nil, &requestError{status: http.StatusMethodNotAllowed, code: "BAD_REQUEST",
			msg: "mutations must be sent with POST"}
	}
	if op != nil && d.fast[op] {
		buf := s.api.gqlBuf()
		if data, errs, ok := runQuery(ctx, schema, d, op, req.Variables, buf); ok {
			resp := &gqlResponse{Errors: s.formatErrors(ctx, errs, "BAD_USER_INPUT"), buf: data}
			if data != nil {
				resp.Data = data
			}
			return resp, nil
		}
		s.api.recycle(buf)
	}
	return s.executeSlow(withResponseBudget(withGQLCache(ctx)), schema, d, req), nil
}

// executeSlow runs a request with graphql-go's executor: mutations,
// introspection, and what else runQuery leaves to it.
func (s *Server) executeSlow(ctx context.Context, schema *graphql.Schema, d *gqlDoc, req *gqlRequest) *gqlResponse {
	res := graphql.Execute(graphql.ExecuteParams{
		Schema:        *schema,
		AST:           d.doc,
		OperationName: req.OperationName,
		Args:          req.Variables,
		Context:       ctx,
	})
	errs := make([]error, len(res.Errors))
	for i, e := range res.Errors {
		errs[i] = e
	}
	return &gqlResponse{Data: res.Data, Errors: s.formatErrors(ctx, errs, "BAD_USER_INPUT")}
}

// validDocument parses and validates a query (or takes it from the
// cache); a non-nil response carries the errors.
func (s *Server) validDocument(ctx context.Context, schema *graphql.Schema, query string) (*gqlDoc, *gqlResponse) {
	if doc := s.api.cachedDoc(query); doc != nil {
		return doc, nil
	}
	doc, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{
		Body: []byte(query),
		Name: "GraphQL request",
	})})
	if err != nil {
		return nil, &gqlResponse{Errors: s.formatErrors(ctx, []error{err}, "GRAPHQL_PARSE_FAILED")}
	}
	if err := checkLimits(doc); err != nil {
		return nil, &gqlResponse{Errors: []gqlErrorJSON{{Message: err.Error(), Extensions: map[string]string{"code": "QUERY_TOO_COMPLEX"}}}}
	}
	if vr := graphql.ValidateDocument(schema, doc, nil); !vr.IsValid {
		errs := make([]error, len(vr.Errors))
		for i, e := range vr.Errors {
			errs[i] = e
		}
		return nil, &gqlResponse{Errors: s.formatErrors(ctx, errs, "GRAPHQL_VALIDATION_FAILED")}
	}
	if err := checkCost(schema, doc); err != nil {
		return nil, &gqlResponse{Errors: []gqlErrorJSON{{Message: err.Error(), Extensions: map[string]string{"code": "QUERY_TOO_COMPLEX"}}}}
	}
	d := newGQLDoc(schema, doc)
	s.api.cacheDoc(query, d)
	return d, nil
}

// findOperation returns the operation that will run: the named one, or the
// only one. nil lets execution report the problem.
func findOperation(doc *ast.Document, name string) *ast.OperationDefinition {
	var found *ast.OperationDefinition
	n := 0
	for _, d := range doc.Definitions {
		op, ok := d.(*ast.OperationDefinition)
		if !ok {
			continue
		}
		n++
		if name != "" && op.Name != nil && op.Name.Value == name {
			return op
		}
		found = op
	}
	if name == "" && n == 1 {
		return found
	}
	return nil
}
