package lambdatest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Image architectures (lambda-openapi.json ImageArchitecture).
const (
	ArchX86_64 = "x86_64"
	ArchARM64  = "arm64"
)

// Image is one machine image of one region, as GET /images lists it.
type Image struct {
	Family, Name, Version, Architecture, Region string
	Updated                                     time.Time
}

// ID is the image's id: a stable UUID-shaped value per family, version,
// architecture and region. Lambda's ids have that shape; the recorded
// list below shares some ids between regions, which a client must not
// rely on either way, so the fake gives each region its own.
func (im Image) ID() string {
	sum := sha256.Sum256([]byte(im.Family + "/" + im.Version + "/" + im.Architecture + "@" + im.Region))
	h := hex.EncodeToString(sum[:16])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// recordedImage is one family-version of the recorded list.
type recordedImage struct {
	family, name, version string
	updated               time.Time
}

var (
	t1026  = time.Date(2025, 6, 2, 17, 10, 0, 0, time.UTC)
	t1459  = time.Date(2025, 9, 24, 20, 31, 0, 0, time.UTC)
	tUbu22 = time.Date(2025, 7, 2, 12, 0, 0, 0, time.UTC)
	tUbu24 = time.Date(2025, 6, 26, 12, 0, 0, 0, time.UTC)
)

// The images of Lambda's GET /images as recorded in
// alexandervaneck/lambda-ai-cloud-api-client tests/data/
// expected_images_output.txt (families, names, versions, architectures and
// regions; the times are made up, the recording has none):
//
//   - every region but us-east-3 has x86_64 images of gpu-base-22-04,
//     gpu-base-24-04, lambda-stack-22-04 (in two versions, -1026 and
//     -1459), lambda-stack-24-04, ubuntu-22-04 and ubuntu-24-04;
//     us-midwest-2 lacks the older lambda-stack-22-04;
//   - us-south-1 and us-south-2 also have lambda-stack-legacy-22-04;
//   - us-east-3, where the GH200s are, has arm64 images only, and only
//     lambda-stack-22-04 (two versions) and lambda-stack-24-04
//     (expected_images_output_arch.txt lists exactly those three).
var (
	x86Images = []recordedImage{
		{"lambda-stack-22-04", "Lambda Stack 22.04", "22.4.5-1026", t1026},
		{"gpu-base-22-04", "GPU Base 22.04", "22.4.5-1459", t1459},
		{"lambda-stack-22-04", "Lambda Stack 22.04", "22.4.5-1459", t1459},
		{"ubuntu-22-04", "Ubuntu 22.04.5 LTS", "22.4.5-20250702", tUbu22},
		{"gpu-base-24-04", "GPU Base 24.04", "24.4.2-1459", t1459},
		{"lambda-stack-24-04", "Lambda Stack 24.04", "24.4.2-1459", t1459},
		{"ubuntu-24-04", "Ubuntu 24.04.2 LTS", "24.4.2-20250626", tUbu24},
	}
	legacyImages = []recordedImage{
		{"lambda-stack-legacy-22-04", "Lambda Stack (Legacy) 22.04", "22.4.5-1026", t1026},
		{"lambda-stack-legacy-22-04", "Lambda Stack (Legacy) 22.04", "22.4.5-1459", t1459},
	}
	armImages = []recordedImage{
		{"lambda-stack-22-04", "Lambda Stack 22.04", "22.4.5-1026", t1026},
		{"lambda-stack-22-04", "Lambda Stack 22.04", "22.4.5-1459", t1459},
		{"lambda-stack-24-04", "Lambda Stack 24.04", "24.4.2-1459", t1459},
	}
)

// DefaultImages are the recorded images, region by region.
func DefaultImages() []Image {
	var out []Image
	add := func(region, arch string, list []recordedImage) {
		for _, r := range list {
			out = append(out, Image{Family: r.family, Name: r.name, Version: r.version, Architecture: arch, Region: region, Updated: r.updated})
		}
	}
	for _, r := range regionCodes() {
		switch r {
		case "us-east-3":
			add(r, ArchARM64, armImages)
		case "us-midwest-2":
			add(r, ArchX86_64, x86Images[1:])
		case "us-south-1", "us-south-2":
			add(r, ArchX86_64, x86Images)
			add(r, ArchX86_64, legacyImages)
		default:
			add(r, ArchX86_64, x86Images)
		}
	}
	return out
}

func (im Image) wire() wImage {
	ts := im.Updated.Format("2006-01-02T15:04:05.000000-07:00")
	return wImage{ID: im.ID(), CreatedTime: ts, UpdatedTime: ts, Name: im.Name, Description: im.Name,
		Family: im.Family, Version: im.Version, Architecture: im.Architecture, Region: region(im.Region)}
}

func (s *Server) listImages() answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []wImage{}
	for _, im := range s.images {
		out = append(out, im.wire())
	}
	return ok(out)
}

// SetImages replaces the images GET /images lists and launches accept, as
// when Lambda publishes or withdraws an image.
func (s *Server) SetImages(images []Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images = slices.Clone(images)
}

// typeArch is the image architecture an instance type boots: arm64 for
// types whose hosts are aarch64 (the GH200's Grace CPU), x86_64 for the
// rest.
func typeArch(t InstanceType) string {
	if t.Machine == "aarch64" || t.Machine == "arm64" {
		return ArchARM64
	}
	return ArchX86_64
}

// launchImageOK reports whether a launch of the type in the region may
// boot the image. The API document has launch answer 404 global/object-
// does-not-exist when a named resource is missing, and images are listed
// per region, so an id or family the region does not list is refused.
// An image of the other architecture is refused the same way: the
// document does not say what Lambda does, and booting an x86_64 image on
// a Grace CPU cannot work, so the stricter answer is the one a client must
// handle. With no image, Lambda picks "the latest Lambda Stack image"
// (InstanceLaunchRequest.image's description); the region must have one
// for the architecture.
func (s *Server) launchImageOK(id, family, regionName string, t InstanceType) bool {
	arch := typeArch(t)
	if id == "" && family == "" {
		family = "lambda-stack-24-04"
		if !slices.ContainsFunc(s.images, func(im Image) bool {
			return im.Region == regionName && im.Architecture == arch && im.Family == family
		}) {
			family = "lambda-stack-22-04"
		}
	}
	return slices.ContainsFunc(s.images, func(im Image) bool {
		return im.Region == regionName && im.Architecture == arch &&
			((id != "" && im.ID() == id) || (id == "" && im.Family == family))
	})
}

// checkArchRegions is a fixture check: an arm64 type can only be offered in
// a region that has arm64 images, as Lambda offers its GH200s only in
// us-east-3 (the recorded images' one arm64 region).
func (s *Server) checkArchRegionsLocked(typeName string, regions []string) {
	i := slices.IndexFunc(s.opts.InstanceTypes, func(t InstanceType) bool { return t.Name == typeName })
	if i < 0 {
		return
	}
	arch := typeArch(s.opts.InstanceTypes[i])
	for _, r := range regions {
		if !slices.ContainsFunc(s.images, func(im Image) bool { return im.Region == r && im.Architecture == arch }) {
			s.t.Errorf("lambdatest: %s (%s) offered in %s, which has no %s image", typeName, arch, r, arch)
		}
	}
}
