package ops

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
)

// sshProxy is a unix socket that forwards each connection to an ssh agent socket of the
// host. The sandbox gets the proxy, not the agent's socket: the mount's mode and owner
// then apply to a socket of our own instead of changing the user's.
type sshProxy struct {
	path  string
	agent string
	ln    net.Listener

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// startSSHProxy listens at path (mode and owner as given) and forwards to agent until
// close.
func startSSHProxy(path, agent string, mode fs.FileMode, uid, gid int) (*sshProxy, error) {
	fi, err := os.Stat(agent)
	if err != nil {
		return nil, fmt.Errorf("ssh agent socket: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return nil, fmt.Errorf("ssh agent %s is not a socket", agent)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("creating ssh agent socket: %w", err)
	}
	p := &sshProxy{path: path, agent: agent, ln: ln, conns: map[net.Conn]struct{}{}}
	if err := os.Lchown(path, uid, gid); err != nil {
		ln.Close()
		return nil, fmt.Errorf("creating ssh agent socket: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("creating ssh agent socket: %w", err)
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *sshProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// track registers c for close; false once the proxy is closing.
func (p *sshProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *sshProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *sshProxy) forward(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	a, err := net.Dial("unix", p.agent)
	if err != nil {
		return
	}
	if !p.track(a) {
		a.Close()
		return
	}
	defer p.untrack(a)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(a, c)
	go pipe(c, a)
	// Either side ending ends the connection; the deferred closes stop the other copy.
	<-done
	p.untrack(a)
	p.untrack(c)
	<-done
}

// close stops accepting, cuts open connections and waits for every goroutine.
func (p *sshProxy) close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
