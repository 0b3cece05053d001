package lambda

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Image architectures, as Lambda's API document names them
// (ImageArchitecture: x86_64, arm64).
const (
	ArchX86_64 = "x86_64"
	ArchARM64  = "arm64"
)

// DefaultImagesCacheTTL is how long GET /images is reused. Lambda adds
// image versions now and then; a launch answered 404 refreshes it sooner.
const DefaultImagesCacheTTL = 10 * time.Minute

// armDefaultFamilies are tried in order for an arm64 type when the class
// names no image. Lambda's recorded GET /images (alexandervaneck/
// lambda-ai-cloud-api-client tests/data/expected_images_output_arch.txt)
// lists only lambda-stack-22-04 and lambda-stack-24-04 for arm64, all in
// us-east-3 where gpu_1x_gh200 runs; GPU Base is first in case Lambda
// publishes an arm64 one.
var armDefaultFamilies = []string{DefaultImageFamily, "lambda-stack-24-04", "lambda-stack-22-04"}

// superchipRE matches the GPUs that come with an Arm CPU on the same
// board: GH200 (Grace Hopper), GB200 and GB10 (Grace Blackwell). Source:
// gpuhunt src/gpuhunt/_internal/constraints.py is_nvidia_superchip
// (^g[bh]\d+), which src/gpuhunt/providers/lambdalabs.py uses to mark
// Lambda's GH200 types ARM; the recorded GET /images has arm64 images only
// in us-east-3, where Lambda runs its GH200s.
var superchipRE = regexp.MustCompile(`^g[bh]\d+`)

// typeArchitecture is the CPU architecture of an instance type's hosts,
// and so of the images it can boot: arm64 for the superchips, x86_64 for
// the rest.
func typeArchitecture(t InstanceType) string {
	for _, w := range words(t.GPUDescription + " " + strings.ReplaceAll(t.Name, "_", " ")) {
		if superchipRE.MatchString(w) {
			return ArchARM64
		}
	}
	return ArchX86_64
}

// ImageChoice is a class's lambda_image, read.
type ImageChoice struct {
	ID     string // an image id: pins one image of one region
	Family string // a family, looked up per region and architecture
}

var familyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ParseImage reads a class's lambda_image: "id:<id>" or "family:<family>"
// say which it is; otherwise a UUID (the form of Lambda's image ids) is an
// id and anything else a family. Empty is the default (ImageChoice{}). A
// container image (nvidia/cuda:12.4.1-…) is an error, not a family.
func ParseImage(s string) (ImageChoice, error) {
	s = strings.TrimSpace(s)
	var c ImageChoice
	switch {
	case s == "":
		return c, nil
	case strings.HasPrefix(s, "id:"):
		c.ID = strings.TrimSpace(strings.TrimPrefix(s, "id:"))
		if c.ID == "" || strings.ContainsAny(c.ID, " /:") {
			return c, fmt.Errorf("%q: id: needs a Lambda image id (a UUID from GET /images)", s)
		}
		return c, nil
	case strings.HasPrefix(s, "family:"):
		c.Family = strings.TrimSpace(strings.TrimPrefix(s, "family:"))
	case uuidRE.MatchString(s):
		c.ID = s
		return c, nil
	default:
		c.Family = s
	}
	if !familyRE.MatchString(c.Family) {
		if strings.ContainsAny(c.Family, "/:") {
			return c, fmt.Errorf("%q looks like a container image; a Lambda image is a family such as %s, family:<name> or id:<uuid>", s, DefaultImageFamily)
		}
		return c, fmt.Errorf("%q is not a Lambda image family (lower-case letters, digits, '-', '.', '_'), family:<name> or id:<uuid>", s)
	}
	return c, nil
}

// chosenImage is the image an offer would boot.
type chosenImage struct {
	id, family, arch string
}

// label is what the offer shows: "<family>@<arch>", or the id when the
// class pinned one.
func (c chosenImage) label(pinned bool) string {
	if pinned || c.family == "" {
		return c.id
	}
	return c.family + "@" + c.arch
}

// pickImage chooses the image of the region for the architecture: the
// pinned id, the named family, or the default families. A family listed in
// several versions gives its newest. ok is false when the region has none
// that fits: the offer cannot run the class's image there.
func pickImage(images []Image, region, arch string, want ImageChoice) (chosenImage, bool) {
	var in []Image
	for _, im := range images {
		if im.Region.Name == region && im.Architecture == arch {
			in = append(in, im)
		}
	}
	if want.ID != "" {
		i := slices.IndexFunc(in, func(im Image) bool { return im.ID == want.ID })
		if i < 0 {
			return chosenImage{}, false
		}
		return chosenImage{id: in[i].ID, family: in[i].Family, arch: arch}, true
	}
	families := []string{want.Family}
	switch {
	case want.Family != "":
	case arch == ArchARM64:
		families = armDefaultFamilies
	default:
		families = []string{DefaultImageFamily}
	}
	for _, f := range families {
		var best *Image
		for i := range in {
			im := &in[i]
			if im.Family == f && (best == nil || newer(im, best)) {
				best = im
			}
		}
		if best != nil {
			return chosenImage{id: best.ID, family: best.Family, arch: arch}, true
		}
	}
	return chosenImage{}, false
}

// newer orders two versions of one family: the later update, then the
// greater version string.
func newer(a, b *Image) bool {
	if !a.UpdatedTime.Equal(b.UpdatedTime) {
		return a.UpdatedTime.After(b.UpdatedTime)
	}
	return a.Version > b.Version
}

// images returns GET /images from a cache younger than
// Options.ImagesCacheTTL. When Lambda cannot be asked, an older list is
// better than none; without one the error is returned.
func (p *Provider) images(ctx context.Context) ([]Image, error) {
	p.mu.Lock()
	cached, at, stale := p.imagesCache, p.imagesAt, p.imagesStale
	p.mu.Unlock()
	if cached != nil && !stale && time.Since(at) < p.opts.ImagesCacheTTL {
		return cached, nil
	}
	v, err, _ := p.imagesGroup.Do("images", func() (any, error) {
		// Not the caller's context: the answer serves every waiter.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.client.http.Timeout)
		defer cancel()
		return p.client.Images(ctx)
	})
	if err != nil {
		if cached != nil {
			p.log.Warn("lambda: GET /images failed; using the list from before", "age", time.Since(at).Round(time.Second), "error", err.Error())
			return cached, nil
		}
		return nil, fmt.Errorf("lambda: listing images: %w", err)
	}
	list := v.([]Image)
	p.mu.Lock()
	p.imagesCache, p.imagesAt, p.imagesStale = list, time.Now(), false
	p.mu.Unlock()
	return list, nil
}

// refreshImages marks the image list stale, so the next use asks Lambda.
func (p *Provider) refreshImages() {
	p.mu.Lock()
	p.imagesStale = true
	p.mu.Unlock()
}

// launchImage is the image spec a create sends: the id the offer's image
// has in the offer's region (ids are unambiguous), else the family. The
// offer's Image is read as Offers wrote it; an offer made elsewhere (no
// Image) is chosen now.
func (p *Provider) launchImage(ctx context.Context, offerImage, classImage, region, typeName string) (*ImageSpec, error) {
	want, err := ParseImage(classImage)
	if err != nil {
		return nil, fmt.Errorf("lambda: lambda_image %w", err)
	}
	if want.ID != "" {
		return &ImageSpec{ID: want.ID}, nil
	}
	family, arch, ok := strings.Cut(offerImage, "@")
	if !ok {
		arch = ""
		if types, err := p.instanceTypes(ctx); err == nil {
			if it, found := types[typeName]; found {
				arch = typeArchitecture(it.InstanceType)
			}
		}
		family = want.Family
	}
	if arch != "" {
		if images, err := p.images(ctx); err == nil {
			if c, found := pickImage(images, region, arch, ImageChoice{Family: family}); found && c.id != "" {
				return &ImageSpec{ID: c.id}, nil
			}
		}
	}
	return &ImageSpec{Family: cmp.Or(family, DefaultImageFamily)}, nil
}
