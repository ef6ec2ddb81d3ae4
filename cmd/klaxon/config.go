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

// secretFlag declares --NAME and --NAME-file with environment equivalents
// ENV and ENV_FILE.
type secretFlag struct {
	name, env   string
	value, file string
}

func newSecret(fs *flag.FlagSet, env map[string]string, name, envName, help string) *secretFlag {
	s := &secretFlag{name: name, env: envName}
	fs.StringVar(&s.value, name, "", help+" (env "+envName+")")
	fs.StringVar(&s.file, name+"-file", "", "file holding the "+name+" (env "+envName+"_FILE)")
	env[name] = envName
	env[name+"-file"] = envName + "_FILE"
	return s
}

func (s *secretFlag) get() (string, error) { return secret("--"+s.name, s.value, s.file) }
