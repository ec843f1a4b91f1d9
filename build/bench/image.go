package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// The OCI types the generated layout needs (image-spec v1.1).
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type imageManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		Cmd []string `json:"Cmd"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// bigImage describes the generated image.
type bigImage struct {
	Dir    string `json:"-"`
	Digest string `json:"digest"`
	Bytes  int64  `json:"bytes"` // sum of the layer blobs
	Layers int    `json:"layers"`
}

// generateImage writes a linux/amd64 image of n layers, together about
// total bytes, as an OCI image layout in dir. Each layer is a tar of one file
// of pseudo-random (incompressible) bytes from a fixed seed, gzip-framed
// without compression (random data does not compress; this keeps generation
// fast), so the digest is the same on every run.
func generateImage(dir string, total int64, n int) (bigImage, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return bigImage{}, err
	}
	img := bigImage{Dir: dir, Layers: n}
	var cfg imageConfig
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = time.Unix(0, 0).UTC().Format(time.RFC3339)
	cfg.Config.Cmd = []string{"/data/0"}
	cfg.RootFS.Type = "layers"
	m := imageManifest{SchemaVersion: 2, MediaType: mtManifest}
	per := total / int64(n)
	for i := 0; i < n; i++ {
		d, diffID, size, err := writeLayer(blobs, i, per)
		if err != nil {
			return bigImage{}, err
		}
		img.Bytes += size
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		m.Layers = append(m.Layers, descriptor{MediaType: mtLayer, Digest: d, Size: size})
	}
	cfgDesc, err := writeJSONBlob(blobs, mtConfig, cfg)
	if err != nil {
		return bigImage{}, err
	}
	m.Config = cfgDesc
	md, err := writeJSONBlob(blobs, mtManifest, m)
	if err != nil {
		return bigImage{}, err
	}
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": "1"}
	idx := imageIndex{SchemaVersion: 2, MediaType: mtIndex, Manifests: []descriptor{md}}
	b, err := json.Marshal(idx)
	if err != nil {
		return bigImage{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		return bigImage{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return bigImage{}, err
	}
	img.Digest = md.Digest
	return img, nil
}

// writeLayer writes layer i (a tar holding data/<i> of size bytes) and
// returns its blob digest, diff ID and blob size.
func writeLayer(blobs string, i int, size int64) (digest, diffID string, blobSize int64, err error) {
	tmp, err := os.CreateTemp(blobs, "layer-")
	if err != nil {
		return "", "", 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	blobHash := sha256.New()
	counter := &countWriter{}
	gz, err := gzip.NewWriterLevel(io.MultiWriter(tmp, blobHash, counter), gzip.NoCompression)
	if err != nil {
		return "", "", 0, err
	}
	tarHash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, tarHash))
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/%d", i), Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return "", "", 0, err
	}
	var seed [32]byte
	seed[0] = byte(i)
	copy(seed[1:], "idopipe-bench")
	if _, err := io.CopyN(tw, rand.NewChaCha8(seed), size); err != nil {
		return "", "", 0, err
	}
	if err := tw.Close(); err != nil {
		return "", "", 0, err
	}
	if err := gz.Close(); err != nil {
		return "", "", 0, err
	}
	if err := tmp.Close(); err != nil {
		return "", "", 0, err
	}
	digest = sum(blobHash)
	if err := os.Rename(tmp.Name(), filepath.Join(blobs, digest[len("sha256:"):])); err != nil {
		return "", "", 0, err
	}
	return digest, sum(tarHash), counter.n, nil
}

func writeJSONBlob(blobs, mediaType string, v any) (descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return descriptor{}, err
	}
	h := sha256.Sum256(b)
	hexd := hex.EncodeToString(h[:])
	if err := os.WriteFile(filepath.Join(blobs, hexd), b, 0o644); err != nil {
		return descriptor{}, err
	}
	return descriptor{MediaType: mediaType, Digest: "sha256:" + hexd, Size: int64(len(b))}, nil
}

func sum(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// layoutDigest is the digest of the first manifest in an OCI layout's index.
func layoutDigest(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return "", err
	}
	var idx imageIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return "", err
	}
	if len(idx.Manifests) == 0 {
		return "", fmt.Errorf("%s: empty index", dir)
	}
	return idx.Manifests[0].Digest, nil
}
