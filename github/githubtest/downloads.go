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

// handleRunnerDownloads: GET …/actions/runners/downloads. It lists the
// Linux tarballs the fake serves, with their real SHA-256, so a client that
// installs what this endpoint says gets a tarball that verifies.
func (s *Server) handleRunnerDownloads(w http.ResponseWriter, r *http.Request, _ scope) {
	v := s.opts.RunnerVersion
	_, sum, err := RunnerTarball(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "fake: "+err.Error())
		return
	}
	tmpl := strings.NewReplacer("{version}", v)
	out := []runnerDownload{}
	for _, arch := range []string{"x64", "arm64", "arm"} {
		url := strings.ReplaceAll(tmpl.Replace(s.TarballURLTemplate()), "{arch}", arch)
		out = append(out, runnerDownload{
			OS: "linux", Architecture: arch, DownloadURL: url,
			Filename:       url[strings.LastIndex(url, "/")+1:],
			SHA256Checksum: sum,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
