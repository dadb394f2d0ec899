package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/server/dashboard"
)

// requireBrowserEnv, set to 1 (as CI does), turns a missing Chromium from
// a skip into a failure.
const requireBrowserEnv = "CONSENSUS_REQUIRE_BROWSER"

// browserWait bounds each wait on the page. The page polls once a second;
// the slack is for a loaded 2-core machine.
const browserWait = 20 * time.Second

func TestDashboardNeedsNoToken(t *testing.T) {
	h, _ := testHandler(t, newFake(), HTTPOptions{Tokens: testTokens(t)})
	for _, p := range []string{"/", "/ui/app.js", "/ui/style.css", "/ui/favicon.svg"} {
		w := do(t, h, http.MethodGet, p, "", "")
		if w.Code != http.StatusOK || w.Header().Get("Content-Security-Policy") != dashboard.ContentSecurityPolicy {
			t.Errorf("GET %s without a token: %d, CSP %q", p, w.Code, w.Header().Get("Content-Security-Policy"))
		}
		// A wrong token does not matter either: the page carries no data.
		if w := do(t, h, http.MethodGet, p, "wrong", ""); w.Code != http.StatusOK {
			t.Errorf("GET %s with a wrong token: %d", p, w.Code)
		}
	}
	if w := do(t, h, http.MethodGet, "/", "", ""); !strings.Contains(w.Body.String(), `<script src="/ui/app.js"`) ||
		w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %s %q", w.Header().Get("Content-Type"), w.Body.String())
	}
	// The API behind it still needs one.
	if w := do(t, h, http.MethodGet, "/v1/status", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("status without a token: %d", w.Code)
	}
	// Unknown assets and writes are answered in the API's JSON form.
	w := do(t, h, http.MethodGet, "/ui/nope.js", "", "")
	if code, err := checkErrorBody(w.Body.Bytes()); w.Code != http.StatusNotFound || err != nil || code != api.CodeNotFound {
		t.Errorf("unknown asset: %d %s", w.Code, w.Body)
	}
	w = do(t, h, http.MethodPut, "/", "", "1")
	if code, err := checkErrorBody(w.Body.Bytes()); w.Code != http.StatusMethodNotAllowed || err != nil || code != api.CodeMethodNotAllowed {
		t.Errorf("PUT /: %d %s", w.Code, w.Body)
	}
}

// chromiumPath returns the Chromium to drive, or skips the test (fails it
// when CONSENSUS_REQUIRE_BROWSER=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (/usr/bin/chromium, or chromium on PATH): the browser test of the dashboard did not run; " +
		"install Debian's chromium package"
	if os.Getenv(requireBrowserEnv) == "1" {
		t.Fatal(msg + " (" + requireBrowserEnv + "=1 requires it)")
	}
	t.Skip(msg)
	return ""
}

// browser is a headless Chromium tab and the console messages it logs.
type browser struct {
	ctx context.Context
	// expected, if set, reports console errors the test causes on
	// purpose.
	expected func(chromedp.ConsoleMessage) bool
	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// newBrowser starts headless Chromium for the test; it is stopped at
// cleanup, which fails the test if the page logged an error or threw (a
// Content-Security-Policy violation is logged as an error).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	b := &browser{ctx: ctx}
	// The first call starts the browser; it must not carry a deadline.
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil {
			t.Logf("closing the browser: %v", err)
		}
		cancel()
		cancelAlloc()
		<-done
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, m := range b.messages {
			if (m.IsException() || m.Type == chromedp.ConsoleError) && (b.expected == nil || !b.expected(m)) {
				t.Errorf("the page logged %s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line)
			}
		}
	})
	return b
}

// do runs actions on the tab, failing the test on error.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// waitFor polls the JavaScript predicate fn (a function of args) in the
// page until it returns true, failing the test after browserWait with
// what the page showed then.
func (b *browser) waitFor(t *testing.T, what, fn string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[bool](fn,
		chromedp.WithPollingArgs(args...),
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		shown, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("browser: waiting %v for %s: %v\nthe page showed:\n%s", browserWait, what, err, shown)
	}
}

func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the page as a PNG when CONSENSUS_DASHBOARD_SCREENSHOT
// names a file (for people looking at the dashboard; tests assert on the
// DOM).
func (b *browser) screenshot(t *testing.T) {
	path := os.Getenv("CONSENSUS_DASHBOARD_SCREENSHOT")
	if path == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		t.Logf("screenshot: %v", err)
	}
}

func statusOf(t *testing.T, httpAddr string) consensus.Status {
	t.Helper()
	r := call(t, http.MethodGet, "http://"+httpAddr+"/v1/status", nil)
	var st consensus.Status
	if r.status != http.StatusOK || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("GET /v1/status: %d %s", r.status, r.body)
	}
	return st
}

// The page's predicates. Each takes its expectations as arguments, so no
// test data is spliced into JavaScript source.
const (
	// membersShown: the members table lists exactly ids, the leader row
	// says leader, and the leader card names it.
	membersShown = `(ids, leader) => {
		const rows = [...document.querySelectorAll('#members tbody tr')];
		const shown = rows.map(r => r.dataset.id).sort();
		const lead = rows.find(r => r.dataset.id === leader);
		return JSON.stringify(shown) === JSON.stringify(ids) &&
			document.getElementById('leader').textContent === leader &&
			lead !== undefined && lead.dataset.role === 'leader' &&
			lead.querySelector('.role').textContent === 'leader' &&
			rows.filter(r => r.dataset.role === 'leader').length === 1;
	}`
	// electedShown: the events list has a leader_elected event naming
	// leader.
	electedShown = `(leader) => [...document.querySelectorAll('#events li[data-type="leader_elected"]')]
		.some(li => li.querySelector('.desc').textContent.startsWith(leader + ' is the leader'))`
)

// TestDashboardInBrowser opens the dashboard of one node of a 3-node
// cluster in headless Chromium and checks it shows the members and the
// leader /v1/status names, then follows a leadership transfer without a
// reload and lists the election among the recent events.
func TestDashboardInBrowser(t *testing.T) {
	c := newTestCluster(t, 3)
	b := newBrowser(t) // after the cluster, so it closes first
	leader := c.waitLeader()
	var page, target string // the node whose page is open; the next leader
	for _, id := range c.ids {
		switch {
		case id == leader:
		case page == "":
			page = id
		default:
			target = id
		}
	}
	t.Logf("leader %s; dashboard of %s; transfer to %s", leader, page, target)
	if st := statusOf(t, c.https[page]); st.LeaderID != leader {
		t.Fatalf("/v1/status of %s names %q, want %s", page, st.LeaderID, leader)
	}

	b.do(t, "open the dashboard", chromedp.Navigate("http://"+c.https[page]+"/"))
	b.waitFor(t, "the three members and leader "+leader, membersShown, c.ids, leader)
	b.waitFor(t, "the first election among the events", electedShown, leader)
	if got := eval[string](t, b, `document.getElementById('term').textContent`); got != fmt.Sprint(statusOf(t, c.https[page]).Term) {
		t.Errorf("term shown %q, /v1/status says %d", got, statusOf(t, c.https[page]).Term)
	}
	b.waitFor(t, "every member healthy", `() => [...document.querySelectorAll('#members tbody tr .health')]
		.map(td => td.textContent).join() === 'healthy,healthy,healthy'`)
	// A reload would lose this.
	b.do(t, "mark the page", chromedp.Evaluate[chromedp.Void](`window.dashboardTestMark = 'same page'`))

	r := call(t, http.MethodPost, "http://"+c.https[leader]+"/v1/leader/transfer", []byte(`{"target":"`+target+`"}`))
	if r.status != http.StatusOK {
		t.Fatalf("transfer to %s: %d %s", target, r.status, r.body)
	}
	b.waitFor(t, "the new leader "+target, membersShown, c.ids, target)
	b.waitFor(t, "the election of "+target+" among the events", electedShown, target)
	if st := statusOf(t, c.https[page]); st.LeaderID != target {
		t.Fatalf("/v1/status of %s names %q after the transfer, want %s", page, st.LeaderID, target)
	}
	if mark := eval[string](t, b, `String(window.dashboardTestMark)`); mark != "same page" {
		t.Fatalf("the page was reloaded (mark %q)", mark)
	}
	b.waitFor(t, "a write rate", `() => / writes\/s$/.test(document.getElementById('write-rate').textContent)`)
	b.screenshot(t)
}

// TestDashboardAsksForToken checks the page against a node whose API needs
// a bearer token: it asks for one, says when it is refused, and once given
// a valid one shows the node, sending it on every fetch.
func TestDashboardAsksForToken(t *testing.T) {
	s := startOne(t, func(c *Config) { c.HTTP = HTTPOptions{Tokens: testTokens(t)} })

	b := newBrowser(t) // after the node, so it closes first
	// Chromium logs every 401 answer as an error; those are the point here.
	b.expected = func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && strings.Contains(m.Text, "status of 401")
	}

	b.do(t, "open the dashboard", chromedp.Navigate("http://"+s.HTTPAddr()+"/"))
	b.waitFor(t, "the token form", `() => !document.getElementById('auth').hidden`)
	b.do(t, "give a wrong token",
		chromedp.SendKeys("#token", "not-a-token"),
		chromedp.Click(`#auth-form button[type="submit"]`))
	b.waitFor(t, "the refusal", `() => !document.getElementById('auth').hidden &&
		document.getElementById('auth-error').textContent.includes('refused')`)
	b.do(t, "give the read-only token",
		chromedp.SendKeys("#token", "r3ad-only"),
		chromedp.Click(`#auth-form button[type="submit"]`))
	b.waitFor(t, "the node as its own leader", membersShown, []string{"n1"}, "n1")
	b.waitFor(t, "the form hidden and the forget button shown", `() => document.getElementById('auth').hidden &&
		!document.getElementById('forget-token').hidden`)
	if got := eval[string](t, b, `sessionStorage.getItem('consensus.dashboard.token')`); got != "r3ad-only" {
		t.Fatalf("session storage holds %q", got)
	}
	// Events need the token too; their list filling proves it was sent.
	b.waitFor(t, "the election among the events", electedShown, "n1")

	// Forgetting the token brings the form back.
	b.do(t, "forget the token", chromedp.Click("#forget-token"))
	b.waitFor(t, "the token form again", `() => !document.getElementById('auth').hidden &&
		sessionStorage.getItem('consensus.dashboard.token') === null`)
}

// networkErrors reports the console errors Chromium logs for requests to
// a node that is gone (connection refused, reset, closed).
func networkErrors(m chromedp.ConsoleMessage) bool {
	return m.Source == "network" && strings.Contains(m.Text, "net::ERR_")
}

// noSidewaysScroll: the page is no wider than its viewport.
const noSidewaysScroll = `() => document.documentElement.scrollWidth <= document.documentElement.clientWidth &&
	document.body.scrollWidth <= document.documentElement.clientWidth`

// TestDashboardDeadNodeView opens the dashboard of the leader of a 3-node
// cluster and crashes that node: the page greys out everything it showed,
// says since when the node has not answered, and links to the other
// members' dashboards; at 420 px it still fits. A link opens a
// survivor's dashboard, which shows the crashed node as suspect (or, later,
// unhealthy) with an unknown lag, never 0.
func TestDashboardDeadNodeView(t *testing.T) {
	c := newTestCluster(t, 3)
	b := newBrowser(t) // after the cluster, so it closes first
	b.expected = networkErrors
	leader := c.waitLeader()
	var others []string
	for _, id := range c.ids {
		if id != leader {
			others = append(others, id)
		}
	}
	b.do(t, "open the leader's dashboard", chromedp.Navigate("http://"+c.https[leader]+"/"))
	b.waitFor(t, "the three members and leader "+leader, membersShown, c.ids, leader)
	b.waitFor(t, "the page live", `() => !document.body.classList.contains('stale') && document.getElementById('stale').hidden &&
		document.getElementById('conn').textContent.startsWith('live')`)

	// The links can only name members whose HTTP address the page has
	// read: members advertise it a moment after they start.
	var addrs []string
	for _, id := range others {
		addrs = append(addrs, c.https[id])
	}
	b.waitFor(t, "every other member's HTTP address in the members table", `(addrs) => {
		const text = document.getElementById('members').textContent;
		return addrs.every(a => text.includes(a));
	}`, addrs)

	c.crash(leader)
	crashed := time.Now()
	b.waitFor(t, "the page greyed out", `() => document.body.classList.contains('stale') &&
		!document.getElementById('stale').hidden &&
		getComputedStyle(document.getElementById('main')).opacity < 0.6 &&
		/^No answer from this node since \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} /.test(document.getElementById('stale-since').textContent) &&
		document.getElementById('conn').textContent.startsWith('no answer since')`)
	t.Logf("the page greyed out %v after the crash", time.Since(crashed).Round(time.Millisecond))
	// What it showed is kept, greyed, not blanked: the leader it knew.
	if got := eval[string](t, b, `document.getElementById('leader').textContent`); got != leader {
		t.Errorf("leader card %q, want the last known %s", got, leader)
	}
	var want []string
	for _, id := range others {
		want = append(want, "http://"+c.https[id]+"/")
	}
	b.waitFor(t, "links to the other members", `(want) => JSON.stringify([...document.querySelectorAll('#stale-others a')]
		.map(a => a.href)) === JSON.stringify(want)`, want)

	b.do(t, "a 420 px wide viewport", chromedp.EmulateViewport(420, 800))
	b.waitFor(t, "the greyed page within 420 px", noSidewaysScroll)
	b.screenshot(t)

	// Follow the link (Navigate rather than a click, so that the wait
	// below starts on the new page).
	b.do(t, "follow the link to "+others[0], chromedp.Navigate(eval[string](t, b,
		`document.querySelector('#stale-others a[data-id="`+others[0]+`"]').href`)))
	b.waitFor(t, others[0]+"'s page, live", `(self) => document.getElementById('node').textContent === 'node ' + self &&
		!document.body.classList.contains('stale')`, others[0])
	b.waitFor(t, "the crashed "+leader+" in doubt there, its lag unknown", `(id) => {
		const row = document.querySelector('#members tbody tr[data-id="' + id + '"]');
		if (!row) return false;
		const health = row.querySelector('.health').textContent;
		return (health === 'suspect' || health === 'unhealthy') &&
			row.querySelector('.lag').textContent === 'unknown' &&
			/^down \d/.test(row.querySelector('.stream').textContent) &&
			/ ago$/.test(row.querySelector('.checked').textContent);
	}`, leader)
}

// lockShown: the locks table has a row for lock name held by lease with
// token and waiters, its name shown as text (no element made of it), and,
// unless value is empty (which arrives as null), the leader value it
// shows.
const lockShown = `(name, lease, token, waiters, value) => {
	const row = [...document.querySelectorAll('#locks tbody tr')].find(r => r.dataset.name === name);
	if (!row) return false;
	const text = (cls) => row.querySelector('.' + cls).textContent;
	return row.querySelector('.lock-name').firstChild.nodeType === Node.TEXT_NODE &&
		row.querySelector('.lock-name').firstChild.data === name &&
		row.querySelectorAll('.lock-name *:not(.tag)').length === 0 &&
		text('lease') === lease && text('token') === String(token) && text('waiters') === String(waiters) &&
		(!value || text('value') === value);
}`

// holdLocks grants three leases on the node at base and, with them, holds
// lock name with one waiter behind it and leads the election "web"; it
// returns the holder's lock and the election's. The waiter leaves at the
// test's cleanup.
func holdLocks(t *testing.T, base, name string) (held, elected api.Lock) {
	t.Helper()
	grant := func() string {
		r := call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":60000}`))
		if r.status != http.StatusOK {
			t.Fatalf("grant: %d %s", r.status, r.body)
		}
		return decodeAs[api.Lease](t, r).ID.String()
	}
	holder, waiter, leader := grant(), grant(), grant()
	lockURL := base + "/v1/locks/" + url.PathEscape(name)
	r := call(t, http.MethodPost, lockURL, fmt.Appendf(nil, `{"lease":%q,"waitMs":0}`, holder))
	if r.status != http.StatusOK {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	held = decodeAs[api.Lock](t, r)
	waited := make(chan apiResponse, 1)
	go func() {
		waited <- call(t, http.MethodPost, lockURL, fmt.Appendf(nil, `{"lease":%q,"waitMs":60000}`, waiter))
	}()
	t.Cleanup(func() {
		// Revoking the waiter's lease takes it out of the queue at once.
		call(t, http.MethodDelete, base+"/v1/leases/"+waiter, nil)
		<-waited
	})
	testwait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		return decodeAs[api.Lock](t, call(t, http.MethodGet, lockURL, nil)).Waiters == 1
	})
	r = call(t, http.MethodPost, base+"/v1/elections/web", fmt.Appendf(nil, `{"lease":%q,"value":{"host":"n3"},"waitMs":0}`, leader))
	if r.status != http.StatusOK {
		t.Fatalf("campaign: %d %s", r.status, r.body)
	}
	return held, decodeAs[api.Lock](t, r)
}

// TestDashboardNarrowLayout opens a node's dashboard 420 px wide with
// workflows, registered nodes, traffic, a lock with a waiter and an
// election: the page never scrolls sideways, and it shows keys of
// maxKeys, workflows by status, request rates with latency, a chart with
// units, event times with the date, and the locks with their holders, a
// lock's name full of HTML's special characters shown as text.
func TestDashboardNarrowLayout(t *testing.T) {
	s := startOne(t, nil)
	base := "http://" + s.HTTPAddr()
	const lockName = `jobs/<img src=x id=injected>&amp;"nightly-report-for-a-rather-long-tenant-name"`
	held, elected := holdLocks(t, base, lockName)
	for _, id := range []string{"ingest-2026-12-04-a-rather-long-workflow-identifier", "b"} {
		if r := call(t, http.MethodPost, base+"/v1/workflows", []byte(`{"id":"`+id+`"}`)); r.status != http.StatusCreated {
			t.Fatalf("start workflow: %d %s", r.status, r.body)
		}
	}
	if r := call(t, http.MethodPost, base+"/v1/workflows/b/stop", nil); r.status != http.StatusOK {
		t.Fatalf("stop workflow: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodPost, base+"/v1/nodes", []byte(`{"id":"worker-1"}`)); r.status != http.StatusOK {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	// A queue with a dead task and a ready one.
	for _, body := range []string{`{"id":"a","data":1,"maxAttempts":1}`, `{"id":"b","data":2}`} {
		if r := call(t, http.MethodPost, base+"/v1/queues/emails/tasks", []byte(body)); r.status != http.StatusOK {
			t.Fatalf("enqueue: %d %s", r.status, r.body)
		}
	}
	r := call(t, http.MethodPost, base+"/v1/queues/emails/claim", []byte(`{"worker":"w1","ttlMs":60000}`))
	if r.status != http.StatusOK {
		t.Fatalf("claim: %d %s", r.status, r.body)
	}
	claim := decodeAs[api.Claim](t, r)
	if r := call(t, http.MethodPost, base+"/v1/queues/emails/tasks/"+claim.Task.ID+"/fail",
		fmt.Appendf(nil, `{"epoch":%d,"error":"boom"}`, claim.Epoch)); r.status != http.StatusOK {
		t.Fatalf("fail: %d %s", r.status, r.body)
	}
	// A schedule whose next tick is months away at the earliest.
	if r := call(t, http.MethodPut, base+"/v1/schedules/new-year", []byte(`{"cron":"0 0 1 1 *","queue":"reports","data":1}`)); r.status != http.StatusOK {
		t.Fatalf("put schedule: %d %s", r.status, r.body)
	}
	b := newBrowser(t) // after the node, so it closes first
	b.do(t, "a 420 px wide viewport", chromedp.EmulateViewport(420, 900))
	b.do(t, "open the dashboard", chromedp.Navigate(base+"/"))
	b.waitFor(t, "the node as its own leader", membersShown, []string{"n1"}, "n1")
	b.waitFor(t, "the overview", `() => {
		const t = (id) => document.getElementById(id).textContent;
		return t('keys') === '3' && /^of \d+ max/.test(t('keys-of')) && t('workflows') === '1 running, 1 stopped' &&
			t('registered-nodes') === '1' && /^\d+(\.\d)? \/s$/.test(t('write-ops')) &&
			/^p50 [\d.]+ ms · p99 [\d.]+ ms/.test(t('write-latency')) && /leader change/.test(t('leader-changes'));
	}`)
	b.waitFor(t, "event times with the date", `() => {
		const times = [...document.querySelectorAll('#events time')];
		return times.length > 0 && times.every(el => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(el.textContent));
	}`)
	b.waitFor(t, "the lock and its holder", lockShown, lockName, held.Lease.String(), held.Token, 1, "")
	b.waitFor(t, "the election and its leader", lockShown, "election/web", elected.Lease.String(), elected.Token, 0, `{"host":"n3"}`)
	b.waitFor(t, "times left by the leader's clock", `(holder) => {
		const row = [...document.querySelectorAll('#locks tbody tr')].find(r => r.querySelector('.lease').textContent === holder);
		const soonest = [...document.querySelectorAll('#soonest tbody tr')];
		return row && /^\d+(\.\d)? s$/.test(row.querySelector('.expires').textContent) &&
			!document.getElementById('soonest').hidden && soonest.length === 3 &&
			soonest.every(r => r.querySelector('.ttl').textContent === '60 s' && /^\d+(\.\d)? s$/.test(r.querySelector('.expires').textContent)) &&
			/it leads/.test(document.getElementById('lease-clock').textContent);
	}`, held.Lease.String())
	b.waitFor(t, "the lease count", `() => document.getElementById('coordination-summary').textContent === '(3 leases, 2 locks)' &&
		!document.getElementById('coordination').hidden &&
		document.querySelector('#locks tr[data-election="web"] .tag').textContent === 'election'`)
	b.waitFor(t, "the queue with its dead task", `() => {
		const row = document.querySelector('#queues tr[data-queue="emails"]');
		const v = (c) => row.querySelector('.' + c).textContent;
		return row && !document.getElementById('queues-section').hidden &&
			document.getElementById('queues-summary').textContent === '(1 queue)' &&
			v('ready') === '1' && v('claimed') === '0' && v('dead') === '1' && row.querySelector('.dead').classList.contains('bad') &&
			/^\d+(\.\d)? s$/.test(v('oldest'));
	}`)
	b.waitFor(t, "the schedule with its next tick", `() => {
		const row = document.querySelector('#schedules tr[data-schedule="new-year"]');
		return row && !document.getElementById('schedules').hidden &&
			row.querySelector('.queue').textContent === 'reports' && row.querySelector('.when').textContent === '0 0 1 1 *' &&
			/^\d+ s$/.test(row.querySelector('.next').textContent) && row.querySelector('.fired').textContent === '0';
	}`)
	if n := eval[float64](t, b, `document.querySelectorAll('#injected, #locks img').length`); n != 0 {
		t.Fatalf("the lock's name made %v elements", n)
	}
	b.waitFor(t, "no sideways scrolling at 420 px", noSidewaysScroll)
	if w := eval[float64](t, b, `document.documentElement.clientWidth`); w != 420 {
		t.Fatalf("viewport %v px wide, want 420", w)
	}
	b.screenshot(t)
}
