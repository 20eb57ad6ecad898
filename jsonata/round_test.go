package jsonata

import (
	"math/rand/v2"
	"testing"
)

// The decimal fast path of $round must give exactly what the reference's algorithm gives,
// including its binary artefacts for large magnitudes.
func TestRoundFastPathMatchesTheReferenceAlgorithm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300_000; i++ {
		v := (rng.Float64() - 0.5) * float64(int64(1)<<rng.IntN(45))
		if rng.IntN(3) == 0 { // many exact ties like 2.675 or -0.0005
			v = float64(rng.IntN(2_000_000)-1_000_000)/1000 + 0.0005*float64(rng.IntN(3))
		}
		p := rng.IntN(8) + 1
		if got, want := roundHalfEven(v, p), roundByShift(v, p); got != want {
			t.Fatalf("$round(%v, %d): fast path %v, reference algorithm %v", v, p, got, want)
		}
	}
}
