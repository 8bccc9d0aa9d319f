package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/builderdev/builder/internal/registry"
)

type loginOptions struct {
	username      string
	password      string
	passwordStdin bool
	insecure      []string
}

func newLoginCmd(_ *globalOptions) *cobra.Command {
	o := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Long: `Log in to a registry (Docker Hub when SERVER is omitted). The credentials are
checked against the registry, then stored where docker login stores them: in
$DOCKER_CONFIG/config.json (default ~/.docker/config.json), or in the credential
helper that file names for the registry (credHelpers, credsStore).`,
		Example: `  builder login -u ci --password-stdin registry.example.com < token.txt
  builder login 127.0.0.1:5000`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			return runLogin(cmd, o, server)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.username, "username", "u", "", "user name")
	f.StringVarP(&o.password, "password", "p", "", "password or token (prefer --password-stdin)")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from standard input")
	f.StringArrayVar(&o.insecure, "insecure-registry", nil, "registry host reached over plain http or with an unverified certificate")
	return cmd
}

func runLogin(cmd *cobra.Command, o *loginOptions, server string) error {
	host, _, err := registry.ServerKey(server)
	if err != nil {
		return err
	}
	in := cmd.InOrStdin()
	stdinTTY := isTerminal(in)
	switch {
	case o.passwordStdin && o.password != "":
		return errors.New("--password and --password-stdin are mutually exclusive")
	case o.passwordStdin && o.username == "":
		return errors.New("--password-stdin needs the user name (-u)")
	case o.password != "":
		fmt.Fprintln(cmd.ErrOrStderr(), "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
	}
	r := bufio.NewReader(in)
	if o.username == "" {
		if !stdinTTY {
			return errors.New("no user name: pass -u (and the password with --password-stdin)")
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Username: ")
		line, err := r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading user name: %w", err)
		}
		o.username = strings.TrimSpace(line)
		if o.username == "" {
			return errors.New("no user name given")
		}
	}
	if o.passwordStdin {
		dt, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("reading password from standard input: %w", err)
		}
		o.password = strings.TrimRight(string(dt), "\r\n")
	} else if o.password == "" {
		if !stdinTTY {
			return errors.New("no password: pass it with --password-stdin")
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		pw, err := term.ReadPassword(int(in.(*os.File).Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return fmt.Errorf("reading password: %w", err)
		}
		o.password = string(pw)
	}
	if o.password == "" {
		return errors.New("empty password")
	}
	if err := registry.Login(cmd.Context(), host, o.username, o.password, registry.WithInsecureRegistries(o.insecure...)); err != nil {
		return err
	}
	if err := registry.SaveLogin(registry.DockerConfigDir(), server, o.username, o.password); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
	return nil
}

func newLogoutCmd(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Long:  `Remove the credentials builder login (or docker login) stored for SERVER (Docker Hub when omitted).`,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			_, key, err := registry.ServerKey(server)
			if err != nil {
				return err
			}
			removed, err := registry.RemoveLogin(registry.DockerConfigDir(), server)
			if err != nil {
				return err
			}
			if !removed {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", key)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", key)
			return nil
		},
	}
}

// isTerminal reports whether r is a terminal (so that prompting makes sense).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
