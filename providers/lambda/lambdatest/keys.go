package lambdatest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Keys returns the registered SSH keys' names.
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.keys {
		out = append(out, k.Name)
	}
	return out
}

func (s *Server) listKeys() answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []wSSHKey{}
	for _, k := range s.keys {
		out = append(out, wSSHKey{ID: k.ID, Name: k.Name, PublicKey: k.PublicKey})
	}
	return ok(out)
}

// addKey registers a key. A name already taken is refused: Lambda's
// document does not say what it does then, and refusing is the answer a
// client must be ready for.
func (s *Server) addKey(body []byte) answer {
	var req struct {
		Name      string  `json:"name"`
		PublicKey *string `json:"public_key"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "Invalid request data.", "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.keys, func(k *wSSHKey) bool { return k.Name == req.Name }) {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "An SSH key with this name already exists.", "Choose another name.")
	}
	k := &wSSHKey{ID: newID(), Name: req.Name}
	if req.PublicKey == nil {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fail(http.StatusBadRequest, "global/invalid-parameters", "Key generation failed.", "")
		}
		sp, _ := ssh.NewPublicKey(pub)
		block, _ := ssh.MarshalPrivateKey(priv, "")
		k.PublicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
		s.keys = append(s.keys, k)
		gen := *k
		gen.PrivateKey = string(pem.EncodeToMemory(block))
		return ok(gen)
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*req.PublicKey)); err != nil {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "Invalid public key.", "Give an OpenSSH public key.")
	}
	k.PublicKey = *req.PublicKey
	s.keys = append(s.keys, k)
	return ok(*k)
}

// deleteKey deletes by id. The document gives this operation no 404, so an
// unknown id is a 400 invalid-parameters.
//
// A key that an instance not yet terminated (booting, active, terminating
// …) lists in ssh_key_names is refused. The document does not say whether
// Lambda allows it; it refuses to delete a file system or a firewall
// ruleset that is in use (filesystems/filesystem-in-use,
// firewall-rulesets/firewall-ruleset-in-use: "Terminate all instances that
// are using the ruleset before deleting it."), and deleteSSHKey declares
// only ApiErrorInvalidParameters for a 400, so the stricter plausible
// answer is that: 400 global/invalid-parameters.
func (s *Server) deleteKey(id string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.keys, func(k *wSSHKey) bool { return k.ID == id })
	if i < 0 {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "SSH key not found.", "Check the key's id.")
	}
	for _, in := range s.instances {
		if in.api.Status != "terminated" && slices.Contains(in.api.SSHKeyNames, s.keys[i].Name) {
			return fail(http.StatusBadRequest, "global/invalid-parameters", "SSH key is in use by one or more instances.",
				"Terminate all instances that are using the key before deleting it.")
		}
	}
	s.keys = slices.Delete(s.keys, i, i+1)
	return ok(struct{}{})
}

// keyNamed returns the public key registered under the name.
func (s *Server) keyNamed(name string) (string, bool) {
	for _, k := range s.keys {
		if k.Name == name {
			return k.PublicKey, true
		}
	}
	return "", false
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
