package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envFlags fills every flag of fs not given on the command line from the
// environment variable named in env (flag name → variable).
func envFlags(fs *flag.FlagSet, env map[string]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, v := range env {
		if given[name] {
			continue
		}
		if val, ok := os.LookupEnv(v); ok {
			if err := fs.Set(name, val); err != nil {
				return fmt.Errorf("$%s: %v", v, err)
			}
		}
	}
	return nil
}

// secret resolves a secret given directly (flag or environment) or through a
// file (the *_FILE form). The error never contains the secret's value.
func secret(name, direct, file string) (string, error) {
	if direct != "" && file != "" {
		return "", fmt.Errorf("%s: give the value or a file, not both", name)
	}
	if file == "" {
		return direct, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: reading %s: %w", name, file, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s: %s is empty", name, file)
	}
	return v, nil
}

// secretFlag is a secret read from the environment (ENV) or a file
// (--NAME-file, ENV_FILE). --NAME itself exists only to refuse the secret
// with an error naming ENV: a value on the command line is visible to every
// user through ps and lands in shell history.
type secretFlag struct {
	name, env   string
	value, file string
}

func newSecret(fs *flag.FlagSet, env map[string]string, name, envName, help string) *secretFlag {
	s := &secretFlag{name: name, env: envName}
	fs.StringVar(&s.value, name, "", "not accepted (ps shows flags): set "+envName+" or "+envName+"_FILE; "+help)
	fs.StringVar(&s.file, name+"-file", "", "file holding the "+help+" (env "+envName+"_FILE)")
	env[name] = envName
	env[name+"-file"] = envName + "_FILE"
	return s
}

func (s *secretFlag) get() (string, error) { return secret(s.env, s.value, s.file) }

// rejectSecretFlags fails when a secret was given as a command-line flag
// (call it after fs.Parse and before envFlags).
func rejectSecretFlags(fs *flag.FlagSet, secrets ...*secretFlag) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range secrets {
			if f.Name == s.name && err == nil {
				err = fmt.Errorf("--%s: secrets are not accepted as flags (ps shows them to every user); set %s or %s_FILE instead", s.name, s.env, s.env)
			}
		}
	})
	return err
}
