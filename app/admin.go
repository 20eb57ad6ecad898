package app

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
)

// adminFlags are the flags each admin command takes (and prints for --help).
var adminFlags = map[string][]string{
	"token create":               {"org", "name", "perm"},
	"token list":                 {"org"},
	"token revoke":               {"org", "id"},
	"env set":                    {"org", "key", "secret", "description"},
	"secure-proxy set-allowlist": {"org", "use-case", "domains", "ips"},
}

// AdminConfig runs the configuration admin commands: API tokens, environment variables and
// secure-proxy allowlists (which the API keeps read-only).
func AdminConfig(ctx context.Context, cfg Config, log *slog.Logger, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: see erpstream help")
	}
	command := args[0] + " " + args[1]
	flags, known := adminFlags[command]
	if !known {
		return fmt.Errorf("unknown admin command %q", command)
	}
	fs := flag.NewFlagSet("erpstream admin "+command, flag.ContinueOnError)
	fs.SetOutput(stdout)
	var org, name, perms, id, key, description, useCase, domains, ips string
	var secret bool
	for _, f := range flags {
		switch f {
		case "org":
			fs.StringVar(&org, "org", "", "org id (required)")
		case "name":
			fs.StringVar(&name, "name", "", "token name (required)")
		case "perm":
			fs.StringVar(&perms, "perm", strings.Join(auth.AllPermissions[:4], ","), "comma-separated permissions: "+strings.Join(auth.AllPermissions, ", "))
		case "id":
			fs.StringVar(&id, "id", "", "token id (required)")
		case "key":
			fs.StringVar(&key, "key", "", "environment variable key (required); the value is read from stdin")
		case "secret":
			fs.BoolVar(&secret, "secret", false, "store as SecretString (needs ERPSTREAM_SECRETS_KEY)")
		case "description":
			fs.StringVar(&description, "description", "", "description")
		case "use-case":
			fs.StringVar(&useCase, "use-case", "", "secure_proxy use case id (required)")
		case "domains":
			fs.StringVar(&domains, "domains", "", "comma-separated allowed domains (exact, or *.suffix)")
		case "ips":
			fs.StringVar(&ips, "ips", "", "comma-separated allowed CIDRs")
		}
	}
	if err := fs.Parse(args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the command's own flags were printed
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if org == "" {
		return errors.New("--org is required")
	}
	var permList []string
	if command == "token create" {
		for _, p := range strings.Split(perms, ",") {
			if p = strings.TrimSpace(p); !slices.Contains(auth.AllPermissions, p) {
				return fmt.Errorf("--perm: unknown permission %q (one of %s)", p, strings.Join(auth.AllPermissions, ", "))
			}
			permList = append(permList, p)
		}
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("KAFKA_BROKERS is required for admin commands")
	}
	reg, stop, err := openRegistry(ctx, cfg.Kafka, log)
	if err != nil {
		return err
	}
	defer stop()
	snap := reg.Snapshot()
	switch command {
	case "token create":
		if name == "" {
			return errors.New("--name is required")
		}
		secretBytes := make([]byte, 32)
		_, _ = rand.Read(secretBytes)
		token := "erp_" + base64.RawURLEncoding.EncodeToString(secretBytes)
		t := &registry.APIToken{ID: "api_" + strings.ToLower(ids.ULID(time.Now())), Hash: auth.HashToken(token), OrgID: org,
			Name: name, Permissions: permList, CreatedAt: time.Now().UTC()}
		if err := reg.PutAPIToken(ctx, t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token id:    %s\ntoken:       %s\npermissions: %s\n(the token is shown once; only its hash is stored)\n", t.ID, token, strings.Join(permList, ","))
	case "token list":
		for _, t := range snap.APITokens(org) {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", t.ID, t.Name, strings.Join(t.Permissions, ","), t.CreatedAt.Format(time.RFC3339))
		}
	case "token revoke":
		for _, t := range snap.APITokens(org) {
			if t.ID == id {
				return reg.DeleteAPIToken(ctx, t.Hash)
			}
		}
		return fmt.Errorf("no token %q in org %s", id, org)
	case "env set":
		if key == "" {
			return errors.New("--key is required")
		}
		value, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return err
		}
		value = strings.TrimRight(value, "\r\n")
		v := &registry.EnvVar{OrgID: org, Key: key, Type: "String", Description: description, UpdatedAt: time.Now().UTC(), UpdatedBy: "admin"}
		if secret {
			box, err := secretsBox(cfg, log)
			if err != nil || box == nil {
				return errors.New("ERPSTREAM_SECRETS_KEY is required to store secrets")
			}
			v.Type = "SecretString"
			if v.Sealed, err = box.Seal(value, org+"/"+key); err != nil {
				return err
			}
		} else {
			v.Value = value
		}
		return reg.PutEnvVar(ctx, v)
	case "secure-proxy set-allowlist":
		uc, ok := snap.UseCase(org, useCase)
		if !ok || uc.Type != registry.TypeSecureProxy {
			return fmt.Errorf("no secure_proxy use case %q in org %s", useCase, org)
		}
		doms, cidrs := splitList(domains), splitList(ips)
		for _, d := range doms {
			if err := ValidateAllowedDomain(d); err != nil {
				return err
			}
		}
		for _, c := range cidrs {
			if _, _, err := net.ParseCIDR(c); err != nil {
				return fmt.Errorf("allowed ip %q: not a CIDR (e.g. 10.20.0.0/16)", c)
			}
		}
		var conf map[string]any
		_ = json.Unmarshal(uc.Configuration, &conf)
		if conf == nil {
			conf = map[string]any{}
		}
		conf["allowed_domains"], conf["allowed_ips"] = doms, cidrs
		next := *uc
		next.Configuration, _ = json.Marshal(conf)
		next.Version++
		next.UpdatedAt = time.Now().UTC()
		next.ChangeDescription = "allowlist changed by erpstream admin secure-proxy"
		if err := reg.PutHistory(ctx, &registry.HistoryEntry{ID: ids.NewUUID(), OrgID: uc.OrgID, UseCaseID: uc.ID,
			IntegrationID: uc.IntegrationID, Type: uc.Type, Name: uc.Name, Slug: uc.Slug, Enabled: uc.Enabled,
			Configuration: uc.Configuration, ChangeDescription: uc.ChangeDescription, CreatedAt: uc.CreatedAt,
			UpdatedAt: uc.UpdatedAt, HistoryCreatedAt: time.Now().UTC(), ChangedBy: "admin", Change: "update"}); err != nil {
			return err
		}
		return reg.PutUseCase(ctx, &next)
	}
	return nil
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ValidateAllowedDomain accepts host names and wildcards with at least two labels after "*."
// (*.example.com ok, *.com rejected).
func ValidateAllowedDomain(d string) error {
	host := strings.ToLower(strings.TrimSuffix(d, "."))
	wild := strings.HasPrefix(host, "*.")
	if wild {
		host = host[2:]
	}
	labels := strings.Split(host, ".")
	if wild && len(labels) < 2 {
		return fmt.Errorf("allowed domain %q: a wildcard needs at least two labels after *. (e.g. *.example.com)", d)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || strings.ContainsAny(l, "*/:@ ") || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return fmt.Errorf("allowed domain %q: not a host name", d)
		}
	}
	return nil
}

func openRegistry(ctx context.Context, kc kafkax.Config, log *slog.Logger) (*registry.Registry, func(), error) {
	topics := kc.Topics()
	reg, err := registry.New(registry.Config{Topic: topics.Config, Opts: kc.BaseOpts(log), Log: log})
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reg.Run(rctx) }()
	select {
	case <-reg.Ready():
	case err := <-done:
		cancel()
		return nil, nil, err
	case <-time.After(30 * time.Second):
		cancel()
		return nil, nil, errors.New("configuration log not readable within 30 s")
	}
	return reg, func() { cancel(); <-done; reg.Close() }, nil
}
