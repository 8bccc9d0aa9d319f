package dockerfile

import (
	"strings"
	"testing"
	"time"

	"github.com/builderdev/builder/llb"
)

// TestSourceDateEpoch: with SOURCE_DATE_EPOCH every layer-making op (RUN, COPY,
// WORKDIR) carries it, so the layer is written with clamped times and its cache key
// differs from a build without it; the result reports it for the exporter.
func TestSourceDateEpoch(t *testing.T) {
	const df = "FROM busybox\nWORKDIR /w\nCOPY . .\nRUN make\n"
	const globalDefault = "ARG SOURCE_DATE_EPOCH=42\n" + df
	for _, tc := range []struct {
		name string
		df   string
		args map[string]string
		want *int64
	}{
		{"unset", df, nil, nil},
		{"empty", df, map[string]string{"SOURCE_DATE_EPOCH": ""}, nil},
		{"build arg", df, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, ptr(1700000000)},
		{"global default", globalDefault, nil, ptr(42)},
		{"build arg over default", globalDefault, map[string]string{"SOURCE_DATE_EPOCH": "7"}, ptr(7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Convert(t.Context(), []byte(tc.df), Options{BuildArgs: tc.args, Resolver: &fakeResolver{}, Platform: testPlatform})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if res.SourceDateEpoch != nil {
					t.Errorf("result epoch %v, want none", res.SourceDateEpoch)
				}
			} else if res.SourceDateEpoch == nil || !res.SourceDateEpoch.Equal(time.Unix(*tc.want, 0)) {
				t.Errorf("result epoch %v, want %d", res.SourceDateEpoch, *tc.want)
			}
			ops := 0
			if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
				var got *int64
				switch op := v.Op().(type) {
				case *llb.ExecOp:
					got = op.SourceDateEpoch
				case *llb.FileOp:
					got = op.SourceDateEpoch
				default:
					return nil
				}
				ops++
				if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
					t.Errorf("%s: epoch %v, want %v", v.Meta().Description, deref(got), deref(tc.want))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if ops != 3 {
				t.Errorf("checked %d ops, want 3 (WORKDIR, COPY, RUN)", ops)
			}
		})
	}
}

func TestSourceDateEpochChangesKeys(t *testing.T) {
	const df = "FROM busybox\nRUN make\n"
	digest := func(args map[string]string) string {
		res, err := Convert(t.Context(), []byte(df), Options{BuildArgs: args, Resolver: &fakeResolver{}, Platform: testPlatform})
		if err != nil {
			t.Fatal(err)
		}
		return res.State.Vertex().Digest().String()
	}
	none, a, b := digest(nil), digest(map[string]string{"SOURCE_DATE_EPOCH": "1"}), digest(map[string]string{"SOURCE_DATE_EPOCH": "2"})
	if none == a || a == b {
		t.Errorf("RUN digests without epoch, epoch 1, epoch 2: %s %s %s; want all different", none, a, b)
	}
}

func TestSourceDateEpochInvalid(t *testing.T) {
	_, err := Convert(t.Context(), []byte("FROM busybox\n"), Options{
		BuildArgs: map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, Resolver: &fakeResolver{}, Platform: testPlatform})
	if err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("invalid epoch: error = %v", err)
	}
}

func ptr(n int64) *int64 { return &n }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
