package diff

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/pgzip"

	"github.com/builderdev/builder/internal/testutil"
)

// writeTextTree fills dir with about total bytes of text-like files: a few large ones and
// many small ones, as a package install leaves them. It returns the bytes written.
func writeTextTree(b testing.TB, dir string, total int64) int64 {
	b.Helper()
	words := []string{
		"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
		"on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
		"had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
		"been", "if", "more", "when", "will", "would", "who", "so", "no", "func", "return", "err",
		"nil", "struct", "package", "import", "context", "layer", "overlay", "snapshot", "digest",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var written int64
	for i := 0; written < total; i++ {
		size := int64(4 << 10)
		if i%10 == 0 {
			size = 8 << 20
		}
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%16))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(sub, fmt.Sprintf("f%05d.txt", i)))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriter(f)
		var n int64
		for n < size {
			word := words[rng.IntN(len(words))]
			sep := " "
			if rng.IntN(12) == 0 {
				sep = "\n"
			}
			m, _ := w.WriteString(word + sep)
			n += int64(m)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		written += n
	}
	return written
}

// BenchmarkWriteLayer measures WriteLayer on ~100 MB of text-like files; MB/s is the
// uncompressed tree size per second.
func BenchmarkWriteLayer(b *testing.B) {
	dir := b.TempDir()
	total := writeTextTree(b, dir, 100<<20)
	cs := testutil.ContentStore(b)
	for _, bc := range []struct {
		name  string
		level int
	}{
		{"default", pgzip.DefaultCompression},
		{"bestspeed", pgzip.BestSpeed},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(total)
			var size int64
			for b.Loop() {
				l, _, err := WriteLayer(b.Context(), cs, dir, WithCompressionLevel(bc.level))
				if err != nil {
					b.Fatal(err)
				}
				size = l.Size
			}
			b.ReportMetric(float64(size)/float64(total), "ratio")
		})
	}
}

// BenchmarkWriteLayerSmall measures the fixed cost of a small RUN step's layer (a few
// files): the per-step budget, not throughput.
func BenchmarkWriteLayerSmall(b *testing.B) {
	dir := b.TempDir()
	for _, name := range []string{"etc/a.conf", "usr/bin/tool", "var/lib/x/state"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("small file content\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	cs := testutil.ContentStore(b)
	for b.Loop() {
		if _, _, err := WriteLayer(b.Context(), cs, dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply extracts a layer of 10,000 small files in 100 directories: the
// per-entry cost (path resolution, metadata calls) rather than byte throughput.
func BenchmarkApply(b *testing.B) {
	testutil.RequiresRoot(b)
	var files []tarFile
	for d := range 100 {
		files = append(files, tarFile{hdr: tar.Header{Name: fmt.Sprintf("usr/share/d%03d/", d), Typeflag: tar.TypeDir, Mode: 0o755}})
		for f := range 100 {
			files = append(files, tarFile{hdr: tar.Header{Name: fmt.Sprintf("usr/share/d%03d/f%03d", d, f), Mode: 0o644}, data: "some content\n"})
		}
	}
	blob := makeTar(b, files...)
	base := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		dst := filepath.Join(base, fmt.Sprint(i))
		if _, err := Apply(b.Context(), bytes.NewReader(blob), dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(files)), "µs/entry")
}
