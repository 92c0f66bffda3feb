package web

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"mime/multipart"
	"net/http"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshKeyPEM returns a fresh unencrypted OpenSSH private key.
func sshKeyPEM(t testing.TB) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test key")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// uploadArtifact sends createArtifact as a GraphQL multipart request,
// parts in the order hut writes them: operations, map, then the file.
func uploadArtifact(t testing.TB, e *apiEnv, token string, jobID int64, path, content string) *gqlResult {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	ops, _ := json.Marshal(map[string]any{
		"query":     "mutation up($job: Int!, $path: String!, $f: File!) { createArtifact(jobId: $job, path: $path, contents: $f) { id path size url } }\n",
		"variables": map[string]any{"job": jobID, "path": path, "f": nil},
	})
	mw.WriteField("operations", string(ops))
	mw.WriteField("map", `{"f":["variables.f"]}`)
	fw, err := mw.CreateFormFile("f", "upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(fw, content)
	mw.Close()
	req, err := http.NewRequest("POST", e.url+"/query", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return e.do(req)
}
