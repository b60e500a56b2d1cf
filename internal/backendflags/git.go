package backendflags

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/lock"
)

// gitBackend: --backend=git, a branch in a git repository (https, ssh,
// git:// or a local path such as a bare repository made with
// `git init --bare /tmp/locks.git`).
func gitBackend() *backend {
	var cfg git.Options
	var tokenFile string
	return &backend{
		addFlags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.URL, "git-url", "", "--backend=git: the repository (https://…, ssh://…, git@host:repo, git://…, or a local path).")
			fs.StringVar(&cfg.Branch, "git-branch", "", "--backend=git: the lock's branch (default leaderelection/<--leader-elect-resource-name>).")
			fs.StringVar(&cfg.Username, "git-username", "", "--backend=git: https basic-auth user (with --git-token-file as password), or the ssh login.")
			fs.StringVar(&tokenFile, "git-token-file", "", "--backend=git: file holding an https access token (basic-auth password with --git-username, else a bearer token).")
			fs.StringVar(&cfg.SSHKeyFile, "git-ssh-key", "", "--backend=git: ssh private key file (default: the ssh-agent at $SSH_AUTH_SOCK).")
			fs.StringSliceVar(&cfg.SSHKnownHosts, "git-known-hosts", nil, "--backend=git: known_hosts files for ssh (default ~/.ssh/known_hosts).")
		},
		newLock: func(_ context.Context, id string, opt *leaderelection.Option, suffix string) (lock.Interface, error) {
			cfg := cfg
			if cfg.URL == "" {
				return nil, fmt.Errorf("--git-url is required")
			}
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return nil, fmt.Errorf("--git-token-file: %w", err)
				}
				token := strings.TrimSpace(string(b))
				if cfg.Username != "" {
					cfg.Password = token
				} else {
					cfg.Token = token
				}
			}
			cfg.Name, cfg.Identity = opt.LeaseLockName+suffix, id
			if cfg.Branch != "" {
				cfg.Branch += suffix
			}
			return git.New(context.Background(), cfg)
		},
	}
}
