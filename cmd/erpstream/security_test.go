package main

import (
	"testing"
	"time"
)

func TestRetryDelaysSetting(t *testing.T) {
	got, err := retryDelays("1s, 2s,5s,10s,1m")
	if err != nil || len(got) != 5 || got[4] != time.Minute {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"1s,2s", "1s,2s,3s,4s,x", "5s,1s,2s,3s,4s", "1s,2s,3s,4s,48h", "0s,1s,2s,3s,4s"} {
		if _, err := retryDelays(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
