package app

import (
	"crypto/rand"
	"log/slog"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/console"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/secrets"
)

// mountConsole serves the operator console on the API port. Its pages call the routes this
// process serves, in the process, with the operator's token: a process serving only some
// services shows the others' pages as unavailable (docs/console.md).
func mountConsole(engine *gin.Engine, chain auth.Chain, box *secrets.Box, log *slog.Logger) error {
	// Sessions are sealed with a key derived from the secrets key, so every instance sharing it
	// accepts the others' sessions; without one a random key lasts as long as the process.
	key, err := box.Derive("console session")
	if err != nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		log.Info("console sessions are sealed with a per-process key (no secrets key): a restart signs operators out")
	}
	h, err := console.New(console.Config{API: engine, Auth: chain, Key: key, Log: log})
	if err != nil {
		return err
	}
	h.Register(engine)
	return nil
}
