package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/internal/certs"
)

// certsCmd writes a development CA and node certificates.
func certsCmd(stdout io.Writer) *cobra.Command {
	var dir, nodes string
	cmd := &cobra.Command{
		Use:   "certs [flags]",
		Short: "write a development CA and node certificates",
		Long: `Write a development CA (ca.pem, ca-key.pem) and a certificate and key for each
node (<node>.pem, <node>-key.pem) into --dir, for serve --cert/--key/--client-ca
and the client commands' --cacert and --cert/--key, valid for the loopback
addresses. Existing files are not overwritten. For development and tests only:
the CA's key is written next to its certificate.`,
		Args: exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			var names []string
			for _, n := range strings.Split(nodes, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
			if len(names) == 0 {
				return usageErrorf("certs: --nodes names no node")
			}
			if err := certs.WriteDev(dir, names); err != nil {
				return failuref("certs: %s", strings.TrimPrefix(err.Error(), "certs: "))
			}
			_, err := fmt.Fprintf(stdout, "wrote a development CA and certificates for %s to %s/ (valid for %s)\n",
				strings.Join(names, ", "), dir, strings.Join(certs.DefaultHosts, ", "))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory to write ca.pem and <node>.pem / <node>-key.pem into")
	cmd.Flags().StringVar(&nodes, "nodes", "n1,n2,n3", "comma-separated node names to issue certificates for")
	return withGlobalFlags(cmd)
}
