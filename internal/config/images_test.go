package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

func loadClasses(t *testing.T, classYAML string) (*config.Config, error) {
	t.Helper()
	body := strings.Replace(base, "    providers: [local]\n", classYAML, 1)
	c, err := config.Load(config.Overrides{}, env(map[string]string{"CRABBOX_CONFIG": writeFile(t, body),
		"CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t", "VAST_API_KEY": "v", "LAMBDA_API_KEY": "l"}))
	if err != nil {
		return nil, err
	}
	return c, c.Validate(config.Needs{Classes: true})
}

// image is Vast's container image and lambda_image Lambda's machine image;
// a lambda-only class that sets image alone keeps working, with a
// deprecation; a class with vast never sends image to Lambda.
func TestImagesPerProvider(t *testing.T) {
	cases := []struct {
		name, class      string
		image, lambdaImg string
		deprecated       bool
	}{
		{"both providers, container image", "    providers: [vast, lambda]\n    image: nvidia/cuda:12.4.1-devel-ubuntu22.04\n",
			"nvidia/cuda:12.4.1-devel-ubuntu22.04", "", false},
		{"both images", "    providers: [vast, lambda]\n    image: nvidia/cuda:12.4.1-devel-ubuntu22.04\n    lambda_image: lambda-stack-24-04\n",
			"nvidia/cuda:12.4.1-devel-ubuntu22.04", "lambda-stack-24-04", false},
		{"lambda only, old image key", "    providers: [lambda]\n    image: lambda-stack-22-04\n",
			"lambda-stack-22-04", "lambda-stack-22-04", true},
		{"lambda only, lambda_image", "    providers: [lambda]\n    lambda_image: id:43336648-096d-4cba-9aa2-f9bb7727639d\n",
			"", "id:43336648-096d-4cba-9aa2-f9bb7727639d", false},
		{"vast only", "    providers: [vast]\n    image: pytorch/pytorch:latest\n", "pytorch/pytorch:latest", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadClasses(t, tc.class)
			if err != nil {
				t.Fatal(err)
			}
			pc := c.ProvisionerClasses()[0]
			if pc.Image != tc.image || pc.LambdaImage != tc.lambdaImg {
				t.Fatalf("image %q lambda image %q, want %q %q", pc.Image, pc.LambdaImage, tc.image, tc.lambdaImg)
			}
			d := c.Deprecations()
			if tc.deprecated != (len(d) == 1) || (tc.deprecated && !strings.Contains(d[0], "lambda_image")) {
				t.Fatalf("deprecations %q", d)
			}
		})
	}
}

func TestBadLambdaImage(t *testing.T) {
	for _, tc := range []struct{ class, key, says string }{
		{"    providers: [lambda]\n    lambda_image: \"id:\"\n", "classes[0] (a100).lambda_image", "id"},
		{"    providers: [vast, lambda]\n    lambda_image: \"family:\"\n", "classes[0] (a100).lambda_image", "family"},
		{"    providers: [vast, lambda]\n    lambda_image: nvidia/cuda:12.4.1-devel-ubuntu22.04\n", "classes[0] (a100).lambda_image", "container image"},
		{"    providers: [lambda]\n    image: nvidia/cuda:12.4.1-devel-ubuntu22.04\n", "classes[0] (a100).image", "container image"},
	} {
		_, err := loadClasses(t, tc.class)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: %v, want key %s saying %q", tc.class, err, tc.key, tc.says)
		}
	}
}
