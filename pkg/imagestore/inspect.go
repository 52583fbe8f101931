package imagestore

import (
	"os"
	"time"

	"github.com/vxn-dev/vxn/pkg/oci"
)

// InspectInfo is `docker image inspect` output for one image (the fields
// vxn knows), plus where vxn keeps its guest disk.
type InspectInfo struct {
	ID           string        `json:"Id"`
	RepoTags     []string      `json:"RepoTags"`
	RepoDigests  []string      `json:"RepoDigests"`
	Created      string        `json:"Created,omitempty"`
	Author       string        `json:"Author,omitempty"`
	Architecture string        `json:"Architecture"`
	Variant      string        `json:"Variant,omitempty"`
	Os           string        `json:"Os"`
	Size         int64         `json:"Size"`
	Config       InspectConfig `json:"Config"`
	RootFS       InspectRootFS `json:"RootFS"`
	// VxnDisk is the guest disk's path when it has been built.
	VxnDisk string `json:"VxnDisk,omitempty"`
}

// InspectConfig is the run configuration part of InspectInfo.
type InspectConfig struct {
	User         string              `json:"User"`
	Env          []string            `json:"Env"`
	Cmd          []string            `json:"Cmd"`
	Entrypoint   []string            `json:"Entrypoint"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

// InspectRootFS lists the layers' diff IDs.
type InspectRootFS struct {
	Type   string   `json:"Type"`
	Layers []string `json:"Layers"`
}

// Inspect describes the image ref names (as Lookup resolves it), in the
// shape of `docker image inspect`: marshal it with encoding/json (docker
// prints a JSON array of these).
func (s *Store) Inspect(ref string) (*InspectInfo, error) {
	img, err := s.Lookup(ref)
	if err != nil {
		return nil, err
	}
	return img.Inspect(s), nil
}

// Inspect describes img; s (may be nil) adds the disk path.
func (img *Image) Inspect(s *Store) *InspectInfo {
	cf := img.Config
	info := &InspectInfo{
		ID:           img.ID,
		RepoTags:     []string{},
		RepoDigests:  []string{},
		Author:       cf.Author,
		Architecture: cf.Architecture,
		Variant:      cf.Variant,
		Os:           cf.OS,
		Size:         img.Size,
		Config: InspectConfig{
			User:         cf.Config.User,
			Env:          cf.Config.Env,
			Cmd:          cf.Config.Cmd,
			Entrypoint:   cf.Config.Entrypoint,
			WorkingDir:   cf.Config.WorkingDir,
			Labels:       cf.Config.Labels,
			ExposedPorts: cf.Config.ExposedPorts,
			StopSignal:   cf.Config.StopSignal,
		},
		RootFS: InspectRootFS{Type: "layers", Layers: []string{}},
	}
	if !cf.Created.IsZero() {
		info.Created = cf.Created.UTC().Format(time.RFC3339Nano)
	}
	for _, d := range cf.RootFS.DiffIDs {
		info.RootFS.Layers = append(info.RootFS.Layers, d.String())
	}
	seenRepo := map[string]bool{}
	for _, n := range img.Names {
		r, err := oci.ParseReference(n)
		if err != nil || r.Transport != oci.Registry {
			info.RepoTags = append(info.RepoTags, n)
			continue
		}
		repo := r.Name().Context().Name()
		if r.Digest() == "" {
			info.RepoTags = append(info.RepoTags, n)
		}
		if !seenRepo[repo] {
			seenRepo[repo] = true
			info.RepoDigests = append(info.RepoDigests, repo+"@"+img.Digest)
		}
	}
	if s != nil {
		if p := s.DiskPath(img.ID); fileExists(p) {
			info.VxnDisk = p
		}
	}
	return info
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
