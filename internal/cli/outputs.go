package cli

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
)

// Output is one parsed --output spec.
type Output struct {
	// Type is docker, oci or image.
	Type string
	// Dest is the file (or, for oci with tar=false, directory) to write.
	Dest string
	// Names are image names (type=image name=a,b; for docker/oci the tags to record).
	Names []string
	// Push sends a type=image output to its registry.
	Push bool
	// Tar is false for an OCI layout written as a directory.
	Tar bool
}

// parseOutput reads a buildx-style output spec: comma-separated key=value pairs, values
// CSV-quoted when they contain commas ("name=\"a,b\""). A bare word is a destination path
// for type=local in buildx; here it is an error, since the local exporter is a later step.
func parseOutput(spec string) (Output, error) {
	r := csv.NewReader(strings.NewReader(spec))
	fields, err := r.Read()
	if err != nil {
		return Output{}, fmt.Errorf("output %q: %w", spec, err)
	}
	o := Output{Tar: true}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Output{}, fmt.Errorf("output %q: %q is not key=value", spec, f)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		case "name", "names":
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					o.Names = append(o.Names, n)
				}
			}
		case "push":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Output{}, fmt.Errorf("output %q: push=%q is not true or false", spec, v)
			}
			o.Push = b
		case "tar":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Output{}, fmt.Errorf("output %q: tar=%q is not true or false", spec, v)
			}
			o.Tar = b
		default:
			return Output{}, fmt.Errorf("output %q: unknown attribute %q", spec, k)
		}
	}
	switch o.Type {
	case "docker", "oci":
		if o.Dest == "" {
			return Output{}, fmt.Errorf("output %q: type=%s needs dest=PATH", spec, o.Type)
		}
		if o.Dest == "-" {
			return Output{}, fmt.Errorf("output %q: writing to stdout is not supported yet", spec)
		}
	case "image", "registry":
		if o.Type == "registry" {
			o.Type, o.Push = "image", true
		}
		if len(o.Names) == 0 {
			return Output{}, fmt.Errorf("output %q: type=image needs name=REF", spec)
		}
	case "":
		return Output{}, fmt.Errorf("output %q: missing type= (docker, oci or image)", spec)
	default:
		return Output{}, fmt.Errorf("output %q: unknown type %q (want docker, oci or image)", spec, o.Type)
	}
	return o, nil
}
