// kftenant-gitssh: a real SSH git server for kftenant's tests of
// `GitAuth::Ssh`, built by tests/support/git_ssh.rs (see that file for why
// this is Go and not a Rust crate).
//
// It serves read-only git over SSH the way GitHub or an sshd with git-shell
// does: public-key auth against one authorized key, then for
// `exec git-upload-pack '<path>'` it runs the real `git upload-pack` on
// <root>/<path>, piping the channel both ways. Nothing else is allowed (no
// shell, no pty, no git-receive-pack, no path outside the root).
//
// Auth attempts are unlimited (MaxAuthTries -1) on purpose: a client that
// retries a refused key forever must hang here, not be cut off by the server,
// so a test can see that the client stops by itself. Every attempt is logged.
//
// Lifetime: it serves until its standard input closes, so it cannot outlive
// the test process that started it, however that process ends.
//
// Usage: kftenant-gitssh -host-key FILE -authorized-key FILE.pub -root DIR
// It prints `listening 127.0.0.1:PORT` on standard output once it accepts
// connections; logs go to standard error.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

func main() {
	hostKeyFile := flag.String("host-key", "", "host private key (OpenSSH format)")
	authorizedFile := flag.String("authorized-key", "", "the one public key accepted (authorized_keys format)")
	root := flag.String("root", "", "folder the repository paths are relative to")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("gitssh: ")
	if *hostKeyFile == "" || *authorizedFile == "" || *root == "" {
		log.Fatal("-host-key, -authorized-key and -root are required")
	}

	hostKey, err := readSigner(*hostKeyFile)
	if err != nil {
		log.Fatal(err)
	}
	authorized, err := readAuthorizedKey(*authorizedFile)
	if err != nil {
		log.Fatal(err)
	}
	rootDir, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}

	var attempts atomic.Int64
	config := &ssh.ServerConfig{
		MaxAuthTries: -1,
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			n := attempts.Add(1)
			ok := bytes.Equal(key.Marshal(), authorized.Marshal())
			log.Printf("auth attempt %d: user %q key %s %s accepted=%v", n, meta.User(), key.Type(), ssh.FingerprintSHA256(key), ok)
			if ok {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	config.AddHostKey(hostKey)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()

	go func() {
		// The parent holds our stdin; EOF means it is gone.
		io.Copy(io.Discard, os.Stdin)
		log.Print("standard input closed: exiting")
		os.Exit(0)
	}()

	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serveConn(conn, config, rootDir)
	}
}

func readSigner(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return signer, nil
}

func readAuthorizedKey(path string) (ssh.PublicKey, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		return nil, fmt.Errorf("authorized key %s: %w", path, err)
	}
	return key, nil
}

func serveConn(conn net.Conn, config *ssh.ServerConfig, root string) {
	defer conn.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(conn, config)
	if err != nil {
		log.Printf("%s: handshake: %v", conn.RemoteAddr(), err)
		return
	}
	defer sconn.Close()
	log.Printf("%s: authenticated as %q", conn.RemoteAddr(), sconn.User())
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			log.Printf("accept channel: %v", err)
			continue
		}
		go serveSession(ch, chReqs, root)
	}
}

func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request, root string) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			// env, pty-req, shell...: refused.
			req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			continue
		}
		dir, err := uploadPackDir(payload.Command, root)
		if err != nil {
			log.Printf("exec %q refused: %v", payload.Command, err)
			fmt.Fprintf(ch.Stderr(), "gitssh: %v\n", err)
			req.Reply(true, nil)
			sendExitStatus(ch, 128)
			return
		}
		req.Reply(true, nil)
		log.Printf("exec git upload-pack %s", dir)
		sendExitStatus(ch, runUploadPack(ch, dir))
		return
	}
}

// uploadPackDir checks that command is `git-upload-pack '<path>'` as git and
// libgit2 send it, and returns the repository folder inside root.
func uploadPackDir(command, root string) (string, error) {
	arg, ok := strings.CutPrefix(command, "git-upload-pack ")
	if !ok {
		return "", fmt.Errorf("only git-upload-pack is served")
	}
	path, err := shellUnquote(strings.TrimSpace(arg))
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, filepath.Clean("/"+path))
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("'%s' does not appear to be a git repository", path)
	}
	return dir, nil
}

// shellUnquote undoes git's single quoting, in which a quote inside the
// path is written as quote, backslash, quote, quote.
func shellUnquote(s string) (string, error) {
	var out strings.Builder
	for len(s) > 0 {
		switch {
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("unterminated quote")
			}
			out.WriteString(s[1 : 1+end])
			s = s[end+2:]
		case s[0] == '\\' && len(s) > 1:
			out.WriteByte(s[1])
			s = s[2:]
		case s[0] == ' ':
			return "", fmt.Errorf("more than one argument")
		default:
			out.WriteByte(s[0])
			s = s[1:]
		}
	}
	return out.String(), nil
}

func runUploadPack(ch ssh.Channel, dir string) uint32 {
	cmd := exec.Command("git", "upload-pack", dir)
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Printf("stdin pipe: %v", err)
		return 128
	}
	if err := cmd.Start(); err != nil {
		log.Printf("start git upload-pack: %v", err)
		fmt.Fprintf(ch.Stderr(), "gitssh: %v\n", err)
		return 128
	}
	go func() {
		// The client's EOF closes git's stdin. If git exits first, the
		// channel's close (when the session ends) ends this copy.
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		log.Printf("git upload-pack %s: %v", dir, err)
		return uint32(exit.ExitCode())
	default:
		log.Printf("git upload-pack %s: %v", dir, err)
		return 128
	}
}

func sendExitStatus(ch ssh.Channel, code uint32) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
}
