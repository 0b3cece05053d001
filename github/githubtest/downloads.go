package githubtest

import (
	"net/http"
	"strings"
)

// DefaultRunnerVersion is the runner release the fake offers when
// Options.RunnerVersion is empty.
const DefaultRunnerVersion = "2.330.0"

// runnerDownload is one entry of GET …/actions/runners/downloads (OAS
// runner-application).
type runnerDownload struct {
	OS                string `json:"os"`
	Architecture      string `json:"architecture"`
	DownloadURL       string `json:"download_url"`
	Filename          string `json:"filename"`
	TempDownloadToken string `json:"temp_download_token,omitempty"`
	SHA256Checksum    string `json:"sha256_checksum"`
}

// handleRunnerDownloads: GET …/actions/runners/downloads (OAS
// actions/list-runner-applications-for-org and -for-repo, an array of
// runner-application). It lists the Linux tarballs the fake serves, one per
// architecture, each with its own SHA-256 (the real release notes give one
// per platform, reference §5.1), so a client that installs what this
// endpoint says for its host's architecture gets a tarball that verifies,
// and one that takes another architecture's checksum gets a mismatch.
func (s *Server) handleRunnerDownloads(w http.ResponseWriter, r *http.Request, _ scope) {
	v := s.opts.RunnerVersion
	tmpl := strings.NewReplacer("{version}", v)
	out := []runnerDownload{}
	for _, arch := range []string{"x64", "arm64", "arm"} {
		_, sum, err := tarballs.get(v, arch, s.opts.Tarball)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "fake: "+err.Error())
			return
		}
		url := strings.ReplaceAll(tmpl.Replace(s.TarballURLTemplate()), "{arch}", arch)
		out = append(out, runnerDownload{
			OS: "linux", Architecture: arch, DownloadURL: url,
			Filename:       url[strings.LastIndex(url, "/")+1:],
			SHA256Checksum: sum,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
