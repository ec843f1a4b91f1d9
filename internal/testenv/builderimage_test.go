package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFileCapability: the security.capability value the rootless image's
// newuidmap carries is the kernel's vfs_cap_data revision 2 with
// CAP_SETUID permitted and the effective flag, byte for byte as
// `setcap cap_setuid+ep` writes it.
func TestFileCapability(t *testing.T) {
	if got, want := hex.EncodeToString([]byte(fileCapability(capSetUID))), "0100000280000000000000000000000000000000"; got != want {
		t.Errorf("cap_setuid+ep: %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString([]byte(fileCapability(capSetGID))), "0100000240000000000000000000000000000000"; got != want {
		t.Errorf("cap_setgid+ep: %s, want %s", got, want)
	}
}

// TestWriteLayer: a layer holds its entries' parents first, directories
// owned as asked, data files, host files with their mode, and extended
// attributes as PAX SCHILY.xattr records (what containerd applies).
func TestWriteLayer(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "helper")
	if err := os.WriteFile(host, []byte("#!/bin/true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layer.tar")
	layer, err := writeLayer(out, map[string]layerEntry{
		"home/user/.local": {dir: true, uid: 1000, gid: 1000},
		"etc/subuid":       {data: []byte("user:100000:65536\n")},
		"usr/bin/helper":   {host: host, xattrs: map[string]string{"security.capability": fileCapability(capSetUID)}},
		"tmp":              {dir: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The layer is pushed as it is: its digest and diff ID are the
	// file's sha256, its size the file's.
	sum := sha256.Sum256(raw)
	if d, _ := layer.Digest(); d.Hex != hex.EncodeToString(sum[:]) || d.Algorithm != "sha256" {
		t.Errorf("digest %s, want sha256:%x", d, sum)
	}
	if d, _ := layer.DiffID(); d.Hex != hex.EncodeToString(sum[:]) {
		t.Errorf("diff ID %s, want sha256:%x", d, sum)
	}
	if n, _ := layer.Size(); n != int64(len(raw)) {
		t.Errorf("size %d, want %d", n, len(raw))
	}
	got := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name], order = h, append(order, h.Name)
	}
	want := []string{"etc/", "etc/subuid", "home/", "home/user/", "home/user/.local/", "tmp/", "usr/", "usr/bin/", "usr/bin/helper"}
	if len(order) != len(want) {
		t.Fatalf("entries %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("entries %v, want %v", order, want)
		}
	}
	if h := got["home/user/.local/"]; h.Uid != 1000 || h.Gid != 1000 || h.Typeflag != tar.TypeDir || h.Mode != 0o755 {
		t.Errorf("home/user/.local: %+v", h)
	}
	if h := got["tmp/"]; h.Mode != 0o1777 {
		t.Errorf("tmp mode %o", h.Mode)
	}
	if h := got["etc/subuid"]; h.Mode != 0o644 || h.Size != int64(len("user:100000:65536\n")) || h.Uid != 0 {
		t.Errorf("etc/subuid: %+v", h)
	}
	h := got["usr/bin/helper"]
	if h.Mode != 0o755 || h.Mode&04000 != 0 || h.PAXRecords["SCHILY.xattr.security.capability"] != fileCapability(capSetUID) {
		t.Errorf("usr/bin/helper: mode %o, PAX %q", h.Mode, h.PAXRecords)
	}
}
