package awsstack

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Secrets is a thin local Secrets Manager for
// AWS_ENDPOINT_URL_SECRETS_MANAGER: GetSecretValue (JSON 1.1 protocol) by
// ARN and staging label, AWSCURRENT when none is given. A label the secret
// lacks answers ResourceNotFoundException, as Secrets Manager does for
// AWSPREVIOUS before the first rotation. Put and Rotate change versions;
// the functions read them at their next cold start.
type Secrets struct {
	URL string

	mu     sync.Mutex
	stages map[string]map[string]string // ARN -> staging label -> value
}

// StartSecrets serves no secrets yet; it stops when the test ends.
func StartSecrets(tb testing.TB) *Secrets {
	s := &Secrets{stages: map[string]map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *Secrets) serve(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionStage string `json:"VersionStage"`
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if target := r.Header.Get("X-Amz-Target"); target != "secretsmanager.GetSecretValue" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"UnknownOperationException","message":"%s is not served by the stand-in"}`, target)
		return
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	stage := in.VersionStage
	if stage == "" {
		stage = "AWSCURRENT"
	}
	v, ok := s.Value(in.SecretID, stage)
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret value for staging label: %s"}`, stage)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretID, "Name": in.SecretID, "SecretString": v,
		"VersionId": fmt.Sprintf("%x", len(v)) + "-" + stage, "VersionStages": []string{stage}, "CreatedDate": float64(time.Now().Unix())})
}

// Value returns the version of arn with that staging label.
func (s *Secrets) Value(arn, stage string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.stages[arn][stage]
	return v, ok
}

// Put sets the version of arn with that staging label.
func (s *Secrets) Put(arn, stage, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stages[arn] == nil {
		s.stages[arn] = map[string]string{}
	}
	s.stages[arn][stage] = value
}

// Rotate is put-secret-value: value becomes AWSCURRENT and the current
// version AWSPREVIOUS.
func (s *Secrets) Rotate(arn, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stages[arn]
	if st == nil {
		st = map[string]string{}
		s.stages[arn] = st
	}
	if cur, ok := st["AWSCURRENT"]; ok {
		st["AWSPREVIOUS"] = cur
	}
	st["AWSCURRENT"] = value
}

// Generate creates the template's AWS::SecretsManager::Secret resources
// whose condition holds: Ref answers the ARN, and AWSCURRENT is generated
// as GenerateSecretString's PasswordLength says (letters and digits, as
// ExcludePunctuation asks; the stack's secrets all ask it).
func (s *Secrets) Generate(tp *Template) error {
	for _, id := range tp.T.ResourcesOfType("AWS::SecretsManager::Secret") {
		res := tp.T.Resource(id)
		if c := res.Get("Condition"); c != nil {
			ok, err := tp.Condition(c.Str())
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		gen := res.Path("Properties", "GenerateSecretString")
		if gen == nil {
			return fmt.Errorf("%s:%d: %s: the stand-in generates secrets only (GenerateSecretString)", tp.File, res.Line, id)
		}
		n := 32
		if l := gen.Get("PasswordLength"); l != nil {
			var err error
			if n, err = tp.Int(l); err != nil {
				return err
			}
		}
		v, err := password(n)
		if err != nil {
			return err
		}
		arn := "arn:aws:secretsmanager:" + Region + ":" + AccountID + ":secret:" + id + "-AbCdEf"
		tp.Refs[id] = arn
		s.Put(arn, "AWSCURRENT", v)
	}
	return nil
}

// password is n random letters and digits.
func password(n int) (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b), nil
}
