package exporter

// Conversions tells how many blobs c has written, for the external tests.
func Conversions(c *Converter) int64 { return c.conversions.Load() }
