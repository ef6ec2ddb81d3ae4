package importer

import (
	"fmt"
	"os"
	"strings"
)

// maxSecretFile bounds a *_FILE secret.
const maxSecretFile = 64 << 10

// Secret reads a credential from the environment variable name, or from the
// file named by name_FILE. Exactly one must be set. Errors name the variable,
// never the value.
func Secret(name string) (string, error) {
	v, hasV := os.LookupEnv(name)
	f, hasF := os.LookupEnv(name + "_FILE")
	switch {
	case hasV && hasF:
		return "", fmt.Errorf("both %s and %s_FILE are set: use one", name, name)
	case hasF:
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %v", name, err)
		}
		if len(data) > maxSecretFile {
			return "", fmt.Errorf("%s_FILE: file larger than %d bytes", name, maxSecretFile)
		}
		v = strings.TrimSpace(string(data))
		if v == "" {
			return "", fmt.Errorf("%s_FILE: %s is empty", name, f)
		}
		return v, nil
	case hasV && strings.TrimSpace(v) != "":
		return strings.TrimSpace(v), nil
	}
	return "", fmt.Errorf("set %s (or %s_FILE, a file holding it): credentials are never taken from flags", name, name)
}
