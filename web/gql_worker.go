package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/graphql-go/graphql"

	"builds/app"
)

// The @worker mutations (for build runners, never user tokens) and the
// GraphQL multipart request format that carries their File uploads.

// gqlUpload is a File scalar value: one part of a multipart request.
type gqlUpload struct {
	header *multipart.FileHeader
}

func (g *schemaBuilder) workerMutations(f graphql.Fields) {
	svc := g.srv.Service
	f["claim"] = &graphql.Field{
		Type:        g.job,
		Description: "Claims a job.",
		Args:        graphql.FieldConfigArgument{"jobId": {Type: nn(graphql.Int)}},
		Resolve: g.worker(func(p graphql.ResolveParams) (any, error) {
			return gqlJobResult(svc.ClaimJobByID(p.Context, argInt(p, "jobId"), ""))
		}),
	}
	f["updateJob"] = &graphql.Field{
		Type:        g.job,
		Description: "Updates job status.",
		Args: graphql.FieldConfigArgument{
			"jobId":  {Type: nn(graphql.Int)},
			"status": {Type: nn(g.jobStatus)},
		},
		Resolve: g.worker(func(p graphql.ResolveParams) (any, error) {
			st, _ := p.Args["status"].(app.JobStatus)
			return gqlJobResult(svc.UpdateJobStatus(p.Context, argInt(p, "jobId"), st))
		}),
	}
	f["updateTask"] = &graphql.Field{
		Type:        g.job,
		Description: "Updates task status.",
		Args: graphql.FieldConfigArgument{
			"taskId": {Type: nn(graphql.Int)},
			"status": {Type: nn(g.taskStatus)},
		},
		Resolve: g.worker(func(p graphql.ResolveParams) (any, error) {
			st, _ := p.Args["status"].(app.TaskStatus)
			return gqlJobResult(svc.UpdateTaskByID(p.Context, argInt(p, "taskId"), st))
		}),
	}
	f["createArtifact"] = &graphql.Field{
		Type:        g.artifact,
		Description: "Uploads a build artifact.",
		Args: graphql.FieldConfigArgument{
			"jobId":    {Type: nn(graphql.Int)},
			"path":     {Type: nn(graphql.String)},
			"contents": {Type: nn(g.fileT)},
		},
		Resolve: g.worker(func(p graphql.ResolveParams) (any, error) {
			u, ok := p.Args["contents"].(*gqlUpload)
			if !ok {
				return nil, app.Errorf(app.EINVALID, "contents: no file was uploaded")
			}
			file, err := u.header.Open()
			if err != nil {
				return nil, fmt.Errorf("open gqlUpload: %w", err)
			}
			defer file.Close()
			return svc.StoreArtifact(p.Context, argInt(p, "jobId"), argString(p, "path"), file)
		}),
	}
}

// readMultipartRequest decodes a GraphQL multipart request: an
// "operations" part with the JSON request (file variables null), a "map"
// part naming, for each file part, the variable paths it fills, then the
// file parts.
func (s *Server) readMultipartRequest(r *http.Request) (*gqlRequest, func(), error) {
	cleanup := func() {}
	if err := r.ParseMultipartForm(8 << 20); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, cleanup, bodyError(err)
		}
		return nil, cleanup, badRequest("invalid multipart request: %v", err)
	}
	form := r.MultipartForm
	cleanup = func() { form.RemoveAll() }
	ops := form.Value["operations"]
	if len(ops) != 1 {
		return nil, cleanup, badRequest("multipart request needs exactly one \"operations\" part")
	}
	req, err := decodeJSONRequest([]byte(ops[0]))
	if err != nil {
		return nil, cleanup, err
	}
	var fileMap map[string][]string
	if m := form.Value["map"]; len(m) == 1 {
		if err := json.Unmarshal([]byte(m[0]), &fileMap); err != nil {
			return nil, cleanup, badRequest("invalid \"map\" part: %v", err)
		}
	} else if len(m) > 1 {
		return nil, cleanup, badRequest("multipart request has more than one \"map\" part")
	}
	for key, paths := range fileMap {
		files := form.File[key]
		if len(files) != 1 {
			return nil, cleanup, badRequest("\"map\" names file part %q, which is missing", key)
		}
		for _, p := range paths {
			if req.Variables == nil {
				req.Variables = map[string]any{}
			}
			if err := setVariablePath(req.Variables, p, &gqlUpload{header: files[0]}); err != nil {
				return nil, cleanup, err
			}
		}
	}
	return req, cleanup, nil
}

// setVariablePath stores v at a "variables.a.0.b" path of the map part.
func setVariablePath(vars map[string]any, path string, v any) error {
	rest, ok := strings.CutPrefix(path, "variables.")
	if !ok || rest == "" {
		return badRequest("\"map\" path %q must start with \"variables.\"", path)
	}
	keys := strings.Split(rest, ".")
	var cur any = vars
	for i, k := range keys {
		last := i == len(keys)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[k] = v
				return nil
			}
			cur = c[k]
		case []any:
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 || n >= len(c) {
				return badRequest("\"map\" path %q: no list element %q", path, k)
			}
			if last {
				c[n] = v
				return nil
			}
			cur = c[n]
		default:
			return badRequest("\"map\" path %q does not match the variables", path)
		}
	}
	return nil
}
