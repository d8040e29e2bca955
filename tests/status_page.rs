//! The status page in a real headless browser (Debian's Chromium over the
//! DevTools protocol, see `support::browser`): filters, injected markup,
//! a narrow screen, and the pages of a real daemon and of `kftenant drift
//! --format html` against the local stack (converged, hand-made drift, a
//! broken commit). Screenshots go to `target/status-page/`; with
//! `KFTENANT_UPDATE_SCREENSHOT=1` the broken-commit one is copied to
//! `docs/status-page.png` for the README.

mod support;

use kftenant::diag::{Diagnostic, Pos};
use kftenant::model;
use kftenant::plan::desired::{self, Desired};
use kftenant::plan::observed::Observed;
use kftenant::plan::{self, Plan, PlanOptions};
use kftenant::status_page::{
    ClusterSection, CommitCard, CommitInfo, CycleRecord, DaemonView, Leadership, Page, TenantState,
    TenantStatus, Tone,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::browser::{Tab, browser, png_size, screenshot_dir};
use support::daemon::{self as d, WEBHOOK_SECRET};
use support::repo::Repo;
use support::{World, git};

/// Names of the rows the page shows (not hidden by a filter), in order.
const VISIBLE: &str = "Array.from(document.querySelectorAll('tr[data-state]')).filter(r => !r.hidden && r.offsetParent !== null).map(r => r.querySelector('td.name').textContent)";

fn visible(tab: &mut Tab) -> Vec<String> {
    serde_json::from_value(tab.eval(VISIBLE)).unwrap()
}

fn text(tab: &mut Tab, selector: &str) -> String {
    tab.eval(&format!(
        "(document.querySelector({}) || {{textContent: ''}}).textContent",
        serde_json::json!(selector)
    ))
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes `html` to `target/status-page/<name>.html`; its `file://` URL.
fn page_file(name: &str, html: &str) -> String {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.html"));
    std::fs::write(&path, html).unwrap();
    format!("file://{}", path.display())
}

/// Takes a screenshot to `target/status-page/<name>.png` and checks it is a
/// real picture of a page: at least `min_width` wide, taller than a
/// screen's worth of nothing, and more than a blank PNG weighs.
fn shoot(tab: &mut Tab, name: &str, min_width: u32) -> PathBuf {
    let path = screenshot_dir().join(format!("{name}.png"));
    let (w, h) = tab.screenshot(&path);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(png_size(&bytes), (w, h));
    assert!(w >= min_width && h >= 300, "{name}: {w}x{h}");
    assert!(
        bytes.len() > 20_000,
        "{name}: a {} byte PNG is too small to show a page",
        bytes.len()
    );
    eprintln!(
        "screenshot {} ({w}x{h}, {} KiB)",
        path.display(),
        bytes.len() / 1024
    );
    path
}

fn sample() -> kftenant::model::Repository {
    model::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo")).unwrap()
}

/// The sample repository against a world with one tenant in each state a
/// plan gives (as in the unit tests of `status_page`): pending, drifted,
/// conflict, waiting, held, converged.
fn mixed() -> (Desired, Plan) {
    let mut r = sample();
    let full = desired::render(&r);
    r.tenants.retain(|t| t.name != "recommendations");
    let d = desired::render(&r);
    let mut o = Observed::converged(&full);
    o.roles.retain(|x| !x.name.starts_with("forecasting-"));
    o.profiles.retain(|x| x.name != "forecasting");
    for list in [
        &mut o.namespaces,
        &mut o.role_bindings,
        &mut o.authorization_policies,
        &mut o.service_accounts,
    ] {
        list.retain(|x| {
            let ns = if x.namespace.is_empty() {
                &x.name
            } else {
                &x.namespace
            };
            ns != "forecasting" && ns != "vision-research"
        });
    }
    for r in &mut o.roles {
        if r.name.starts_with("fraud-detection-") {
            r.tags.insert("team".into(), "changed-by-hand".into());
        }
        if r.name.starts_with("nlp-research-") {
            r.tags.clear();
        }
    }
    let p = plan::plan(&d, &o, &PlanOptions::default());
    (d, p)
}

#[test]
fn filters_by_state_and_by_name_and_keep_them_across_a_reload() {
    let started = Instant::now();
    let (d, p) = mixed();
    let tenants = kftenant::status_page::tenants_of(&d);
    let html = Page::drift_report(now_unix(), None, [(tenants.as_slice(), &p)]).render();
    let url = page_file("filters", &html);
    let mut tab = browser().tab(1200, 900);
    tab.goto(&url);
    let all = visible(&mut tab);
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(text(&mut tab, "#shown"), "6 of 6 shown");

    // By state: a click on "drifted".
    tab.click("button[data-filter=\"drifted\"]");
    assert_eq!(visible(&mut tab), ["fraud-detection"]);
    assert_eq!(text(&mut tab, "#shown"), "1 of 6 shown");
    assert_eq!(
        tab.eval(
            "document.querySelector('button[data-filter=\"drifted\"]').getAttribute('aria-pressed')"
        ),
        "true"
    );
    tab.click("button[data-filter=\"held\"]");
    assert_eq!(visible(&mut tab), ["recommendations"]);

    // By name: typed into the box, over all states.
    tab.click("button[data-filter=\"\"]");
    tab.type_into("#q", "research");
    assert_eq!(visible(&mut tab), ["nlp-research", "vision-research"]);
    // Both at once.
    tab.click("button[data-filter=\"conflict\"]");
    assert_eq!(visible(&mut tab), ["nlp-research"]);
    // By owner too: a tenant owner looks for their own address.
    tab.click("button[data-filter=\"\"]");
    tab.click("#q");
    tab.clear_focused();
    tab.type_into("#q", "priya.sharma");
    assert_eq!(visible(&mut tab), ["fraud-detection"]);

    // The filter lives in the URL's fragment: a reload (the daemon's
    // refresh) keeps it.
    tab.clear_focused();
    tab.type_into("#q", "RESEARCH");
    tab.click("button[data-filter=\"waiting\"]");
    assert_eq!(visible(&mut tab), ["vision-research"]);
    tab.reload();
    assert_eq!(visible(&mut tab), ["vision-research"]);
    assert_eq!(tab.eval("document.getElementById('q').value"), "research");
    shoot(&mut tab, "filtered", 1200);

    // Nothing matches: every row hidden, and so is the cluster's table.
    tab.click("button[data-filter=\"\"]");
    tab.click("#q");
    tab.clear_focused();
    tab.type_into("#q", "no-such-tenant");
    assert!(visible(&mut tab).is_empty());
    assert_eq!(
        tab.eval("document.querySelector('section.cluster').hidden"),
        true
    );
    assert!(
        tab.console()
            .iter()
            .all(|l| !l.contains("Content Security Policy")),
        "{:?}",
        tab.console()
    );
    // Without JavaScript every row is there, even under a link to a filter
    // (which a browser with JavaScript follows: one row).
    let mut plain = browser().tab(1200, 900);
    plain.call(
        "Emulation.setScriptExecutionDisabled",
        serde_json::json!({"value": true}),
    );
    plain.goto(&format!("{url}#state=drifted"));
    assert_eq!(visible(&mut plain).len(), 6);
    let mut linked = browser().tab(1200, 900);
    linked.goto(&format!("{url}#state=drifted"));
    assert_eq!(visible(&mut linked), ["fraud-detection"]);
    eprintln!("browser test (filters): {:?}", started.elapsed());
}

#[test]
fn a_section_per_cluster_and_the_filter_spans_them() {
    let started = Instant::now();
    // sample-clusters: dev, staging and prod; one role changed by hand in staging.
    let src = model::DirSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-clusters"));
    let repos = model::load_all(&src).expect("sample-clusters is valid");
    let mut tenants = Vec::new();
    let mut plans = Vec::new();
    for r in &repos {
        let d = desired::render(r);
        let mut o = Observed::converged(&d);
        if d.cluster.contains("staging") {
            let role = o
                .roles
                .iter_mut()
                .find(|x| x.name.starts_with("forecasting-"))
                .unwrap();
            role.tags.insert("team".into(), "changed-by-hand".into());
        }
        tenants.push(kftenant::status_page::tenants_of(&d));
        plans.push(plan::plan(&d, &o, &PlanOptions::default()));
    }
    let page = Page::drift_report(
        now_unix(),
        None,
        tenants.iter().map(Vec::as_slice).zip(&plans),
    );
    let mut tab = browser().tab(1200, 900);
    tab.goto(&page_file("clusters", &page.render()));
    let sections: Vec<String> = serde_json::from_value(tab.eval(
        "Array.from(document.querySelectorAll('section.cluster')).filter(s => !s.hidden).map(s => s.getAttribute('data-cluster'))",
    ))
    .unwrap();
    let names: Vec<String> = plans.iter().map(|p| p.cluster.clone()).collect();
    assert_eq!(sections, names);
    assert_eq!(
        visible(&mut tab).len(),
        tenants.iter().map(Vec::len).sum::<usize>()
    );
    // The filter runs over every cluster; sections left empty disappear.
    tab.click("button[data-filter=\"drifted\"]");
    assert_eq!(visible(&mut tab), ["forecasting"]);
    let shown: Vec<String> = serde_json::from_value(tab.eval(
        "Array.from(document.querySelectorAll('section.cluster')).filter(s => !s.hidden).map(s => s.getAttribute('data-cluster'))",
    ))
    .unwrap();
    assert_eq!(shown.len(), 1);
    assert!(shown[0].contains("staging"), "{shown:?}");
    tab.click("button[data-filter=\"\"]");
    tab.type_into("#q", "forecasting");
    assert_eq!(
        visible(&mut tab).len(),
        repos.len(),
        "forecasting is on every cluster"
    );
    shoot(&mut tab, "clusters", 1200);
    eprintln!("browser test (clusters): {:?}", started.elapsed());
}

/// Markup an attacker could put in a tenant file or a commit message.
const PAYLOADS: [&str; 5] = [
    r#"<img src=x onerror="window.__pwned='img';alert(1)">"#,
    r#"</script><script>window.__pwned='script';alert(2)</script>"#,
    r#""><svg onload="window.__pwned='svg'"></svg>"#,
    r#"' onmouseover='window.__pwned=1' data-x='"#,
    r#"<style>body{display:none}</style><a href="javascript:alert(3)">x</a>"#,
];

/// A daemon page with the payloads everywhere text from the repository or
/// the live world goes.
fn hostile_page() -> Page {
    let tenants = PAYLOADS
        .iter()
        .enumerate()
        .map(|(i, p)| TenantStatus {
            name: format!("team-{i}{p}"),
            owner: Some(p.to_string()),
            state: TenantState::Drifted,
            reasons: vec![p.to_string(), format!("iam_role.x: {p}")],
        })
        .collect();
    Page {
        title: "status".into(),
        now_unix: now_unix(),
        refresh_seconds: Some(30),
        commits: vec![CommitCard {
            title: "Commit applied".into(),
            commit: Some(CommitInfo {
                id: "0123456789abcdef0123456789abcdef01234567".into(),
                subject: Some(PAYLOADS.concat()),
                committed_unix: Some(now_unix() as i64 - 3_600),
            }),
            event: Some(("applied".into(), now_unix() - 60)),
            note: Some(PAYLOADS[1].into()),
            tone: Tone::Good,
        }],
        daemon: Some(DaemonView {
            leadership: Leadership::Elected {
                lease: "kubeflow/kftenant".into(),
                identity: "kftenant-0".into(),
                leader: false,
                holder: Some(PAYLOADS[0].into()),
            },
            cycles: vec![CycleRecord {
                cycle: 7,
                finished_unix: now_unix() - 5,
                result: "success".into(),
                seconds: 0.8,
                changes: 2,
            }],
            repository: format!("https://git.example/{}", PAYLOADS[2]),
        }),
        validation: Some((
            "feedbeef".into(),
            vec![
                Diagnostic::at(
                    format!("tenants/{}.yaml", PAYLOADS[0]),
                    Pos::new(3, 9),
                    PAYLOADS[1],
                )
                .with_hint(PAYLOADS[4]),
            ],
        )),
        errors: vec![format!("observe: {}", PAYLOADS[3])],
        clusters: vec![ClusterSection {
            cluster: PAYLOADS[2].into(),
            as_of: Some(PAYLOADS[4].into()),
            tenants,
        }],
        redact: vec![],
    }
}

#[test]
fn injected_markup_stays_text_and_runs_nothing() {
    let started = Instant::now();
    let html = hostile_page().render();
    let url = page_file("hostile", &html);
    let mut tab = browser().tab(1200, 900);
    tab.goto(&url);
    // Give an onerror or onload handler time to fire, were there one.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tab.eval("window.__pwned === undefined"), true);
    assert_eq!(tab.dialogs(), 0, "no alert() ran");
    let counts = tab.eval(
        "[document.images.length, document.scripts.length, document.querySelectorAll('svg').length, \
          document.querySelectorAll('a[href^=\"javascript\"]').length, document.styleSheets.length, \
          getComputedStyle(document.body).display]",
    );
    assert_eq!(
        counts,
        serde_json::json!([0, 1, 1, 0, 1, "block"]),
        "only the page's own script, chart and style"
    );
    // Every payload reads back as the very text it was.
    let owners: Vec<String> = serde_json::from_value(
        tab.eval("Array.from(document.querySelectorAll('td.owner')).map(td => td.textContent)"),
    )
    .unwrap();
    assert_eq!(owners, PAYLOADS);
    assert_eq!(
        text(&mut tab, "#validation code.loc"),
        format!("tenants/{}.yaml:3:9", PAYLOADS[0])
    );
    assert!(text(&mut tab, ".subject").contains(PAYLOADS[1]));
    // The filter still works on such names.
    tab.type_into("#q", "team-1</script>");
    assert_eq!(visible(&mut tab), [format!("team-1{}", PAYLOADS[1])]);
    shoot(&mut tab, "hostile", 1200);

    // Were escaping ever to fail, the Content-Security-Policy stops the
    // script: markup spliced in raw runs nothing, while the page's own
    // script (allowed by its hash) still filters.
    let raw = html.replacen(
        "<main>",
        "<main><script>window.__pwned='raw'</script><img src=x onerror=\"window.__pwned='raw-img'\">",
        1,
    );
    let mut tab = browser().tab(1200, 900);
    tab.goto(&page_file("hostile-raw", &raw));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tab.eval("window.__pwned === undefined"), true);
    let console = tab.console();
    assert!(
        console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "the browser reports the blocked script: {console:?}"
    );
    tab.click("button[data-filter=\"drifted\"]");
    assert_eq!(text(&mut tab, "#shown"), "5 of 5 shown");
    eprintln!("browser test (injected markup): {:?}", started.elapsed());
}

#[test]
fn a_narrow_screen_scrolls_only_down() {
    let started = Instant::now();
    let mut page = hostile_page();
    // Long words that cannot wrap at spaces: addresses, ARNs, a 63-character name.
    let (d, p) = mixed();
    let mut rows =
        kftenant::status_page::tenant_rows(&kftenant::status_page::tenants_of(&d), &p, None);
    rows.push(TenantStatus {
        name: format!("{}x", "a".repeat(62)),
        owner: Some(format!("{}@example.com", "b".repeat(60))),
        state: TenantState::Error,
        reasons: vec![format!(
            "iam_role.{}: AccessDenied: arn:aws:iam::123456789012:policy/{}",
            "c".repeat(64),
            "d".repeat(100)
        )],
    });
    page.clusters[0].tenants = rows;
    page.clusters[0].cluster = "kubeflow-prod".into();
    page.daemon.as_mut().unwrap().cycles = (1..=60)
        .map(|i| CycleRecord {
            cycle: i,
            finished_unix: now_unix() - (60 - i) * 60,
            result: if i % 17 == 0 {
                "error".into()
            } else {
                "success".into()
            },
            seconds: 0.2 + (i % 7) as f64 * 0.1,
            changes: if i % 11 == 0 { 35 } else { 0 },
        })
        .collect();
    let url = page_file("narrow", &page.render());
    let mut tab = browser().tab(375, 812);
    tab.goto(&url);
    let overflow = tab.eval(
        "[document.documentElement.scrollWidth, window.innerWidth, \
          Math.max(...Array.from(document.querySelectorAll('body *')).map(e => e.getBoundingClientRect().right))]",
    );
    let (scroll, inner, right) = (
        overflow[0].as_f64().unwrap(),
        overflow[1].as_f64().unwrap(),
        overflow[2].as_f64().unwrap(),
    );
    assert_eq!(inner, 375.0);
    assert!(
        scroll <= inner,
        "the page is {scroll} px wide on a {inner} px screen"
    );
    assert!(
        right <= inner + 0.5,
        "an element reaches {right} px on a {inner} px screen"
    );
    // Rows are cards there: the header row is hidden, each cell on its own line.
    assert_eq!(
        tab.eval("getComputedStyle(document.querySelector('thead')).display"),
        "none"
    );
    let path = shoot(&mut tab, "narrow", 375);
    let (w, _) = png_size(&std::fs::read(path).unwrap());
    assert_eq!(w, 375, "the screenshot is no wider than the screen");
    eprintln!("browser test (narrow screen): {:?}", started.elapsed());
}

#[test]
fn the_page_reloads_itself_and_keeps_the_filter() {
    let started = Instant::now();
    let mut page = hostile_page();
    page.refresh_seconds = Some(1);
    let mut tab = browser().tab(1024, 768);
    tab.goto(&page_file("refresh", &page.render()));
    tab.click("button[data-filter=\"drifted\"]");
    tab.type_into("#q", "team-3");
    // Typing holds the reload back (the box has the focus) ...
    tab.eval("window.__before_reload = 1");
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(tab.eval("window.__before_reload"), 1);
    // ... once the focus leaves the box, the page reloads, filter kept.
    let since = tab.loads();
    tab.eval("document.activeElement.blur()");
    tab.wait_load(since);
    assert_eq!(tab.eval("window.__before_reload === undefined"), true);
    assert_eq!(visible(&mut tab), [format!("team-3{}", PAYLOADS[3])]);
    // Unticked, it stays.
    tab.click("#auto");
    tab.eval("window.__stays = 1");
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(tab.eval("window.__stays"), 1);
    eprintln!("browser test (reload): {:?}", started.elapsed());
}

#[test]
fn drift_html_of_a_broken_repository_shows_every_problem_where_it_is() {
    // Validation fails before anything is observed: no stack needed.
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("drift.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "drift",
            "tests/fixtures/broken-repo",
            "--format",
            "html",
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(".yaml:") || l.contains(".toml:") || l.contains(".json:"))
        .collect();
    assert!(problems.len() >= 3, "{stderr}");
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.contains("The repository fails validation"));
    let mut tab = browser().tab(1200, 900);
    tab.goto(&format!("file://{}", file.display()));
    let locs: Vec<String> = serde_json::from_value(tab.eval(
        "Array.from(document.querySelectorAll('#validation code.loc')).map(c => c.textContent)",
    ))
    .unwrap();
    // Every problem the command printed is on the page, at its place.
    for p in &problems {
        let loc = p.split(": ").next().unwrap();
        assert!(locs.iter().any(|l| l == loc), "{loc} not in {locs:?}");
    }
    assert_eq!(text(&mut tab, "#shown"), "0 of 0 shown");
    shoot(&mut tab, "drift-broken-repository", 1200);
}

// --- Against the local stack: a real daemon and `kftenant drift --format html`.

fn commit_all(dir: &Path, msg: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"])
}

async fn setup(name: &str) -> (World, aws_sdk_iam::Client, Repo) {
    let world = World::new(name);
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let repo = Repo::new(&world);
    git(repo.dir.path(), &["init", "-q", "-b", "main"]);
    (world, iam, repo)
}

/// The rows of the page: (name, state, reasons text).
fn rows(tab: &mut Tab) -> Vec<(String, String, String)> {
    let v: Value = tab.eval(
        "Array.from(document.querySelectorAll('tr[data-state]')).map(r => \
           [r.querySelector('td.name').textContent, r.getAttribute('data-state'), r.querySelector('td.reason').textContent])",
    );
    serde_json::from_value(v).unwrap()
}

fn row(tab: &mut Tab, name: &str) -> (String, String) {
    rows(tab)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, r)| (s, r))
        .unwrap_or_else(|| panic!("no row {name}"))
}

/// Pokes the daemon's webhook and waits for the cycle it starts to end.
fn next_cycle(port: u16) {
    let cycle = d::status(port)["cycle"].as_u64().unwrap();
    d::poke(port);
    d::wait_for("the next cycle", Duration::from_secs(60), || {
        d::status(port)["cycle"].as_u64().unwrap() > cycle
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_page_converged_with_drift_and_with_a_broken_commit() {
    let (world, iam, repo) = setup("status page").await;
    let remote = repo.dir.path();
    let first = commit_all(remote, "initial tenants <b>from the platform team</b>");
    let cache = tempfile::tempdir().unwrap();
    // A long interval: cycles run at start and on webhooks only, so the
    // test decides when the daemon looks.
    let daemon = d::start(&world, repo.path(), cache.path(), "1h", &[], &[]);
    d::wait_for(
        "the first commit to be applied",
        Duration::from_secs(90),
        || d::status(daemon.port)["last_applied_commit"] == first.as_str(),
    );
    let tenants = d::status(daemon.port)["tenants"].as_u64().unwrap() as usize;
    // The first cycle created everything (every row says what it applied);
    // the next finds nothing to do.
    next_cycle(daemon.port);

    // The page and its headers.
    let r = d::http(daemon.port, "GET", "/", &[], b"");
    assert_eq!(r.code, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").expect("a CSP header");
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(!r.body.contains(WEBHOOK_SECRET));

    let url = format!("http://127.0.0.1:{}/", daemon.port);
    let started = Instant::now();
    let mut tab = browser().tab(1280, 900);
    tab.goto(&url);
    let all = rows(&mut tab);
    assert_eq!(all.len(), tenants, "{all:?}");
    assert!(
        all.iter()
            .all(|(_, s, r)| s == "converged" && r == "IAM and the cluster match git"),
        "{all:?}"
    );
    assert!(text(&mut tab, ".cards").contains(&first[..12]));
    assert!(
        text(&mut tab, ".cards").contains("initial tenants <b>from the platform team</b>"),
        "the commit message, as text"
    );
    assert!(text(&mut tab, "#leadership").contains("only writer"));
    assert!(text(&mut tab, "#last-cycle").contains("success"));
    assert!(
        tab.eval("document.querySelectorAll('#cycles rect.bar').length")
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(
        tab.eval("document.getElementById('validation')"),
        Value::Null
    );
    shoot(&mut tab, "daemon-converged", 1280);
    let browser_time = started.elapsed();

    // Hand-made drift: a tag of one role changed in IAM. `kftenant drift
    // --format html` (the CI artifact) shows it before the daemon looks again.
    let forecasting = repo.tenant("forecasting");
    iam.tag_role()
        .role_name(repo.role("forecasting"))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("changed-by-hand")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let report = cache.path().join("drift.html");
    let out = world
        .kftenant()
        .args([
            "drift",
            repo.path(),
            "--format",
            "html",
            "--out",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let mut file_tab = browser().tab(1280, 900);
    file_tab.goto(&format!("file://{}", report.display()));
    let (state, reason) = row(&mut file_tab, &forecasting);
    assert_eq!(state, "drifted");
    assert!(reason.contains("tags in IAM differ from git"), "{reason}");
    assert!(
        rows(&mut file_tab)
            .iter()
            .filter(|(_, s, _)| s == "converged")
            .count()
            == tenants - 1
    );
    file_tab.click("button[data-filter=\"drifted\"]");
    assert_eq!(visible(&mut file_tab), std::slice::from_ref(&forecasting));
    file_tab.click("button[data-filter=\"\"]");
    shoot(&mut file_tab, "drift-report", 1280);
    let browser_time = browser_time + started.elapsed();

    // The daemon corrects it on its next cycle, and says so.
    next_cycle(daemon.port);
    let started = Instant::now();
    tab.goto(&url);
    let (state, reason) = row(&mut tab, &forecasting);
    assert_eq!(state, "converged");
    assert!(
        reason.contains("applied in this cycle") && reason.contains("drift corrected"),
        "{reason}"
    );
    assert!(
        text(&mut tab, "#last-cycle").contains("1 change"),
        "{}",
        text(&mut tab, "#last-cycle")
    );
    shoot(&mut tab, "daemon-drift-corrected", 1280);
    let browser_time = browser_time + started.elapsed();

    // A broken commit: its problems with file:line:column, the last good
    // commit still applied, every tenant still listed.
    let file = remote.join("tenants/forecasting.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        good.replace("  owner: sam.okafor@acme.example", "  owner: [broken"),
    )
    .unwrap();
    let broken = commit_all(remote, "forecasting: new owner");
    d::poke(daemon.port);
    d::wait_for(
        "the broken commit to be reported",
        Duration::from_secs(30),
        || {
            let st = d::status(daemon.port);
            st["current_commit"] == broken.as_str()
                && !st["validation_errors"].as_array().unwrap().is_empty()
        },
    );
    let started = Instant::now();
    tab.goto(&url);
    let loc = text(&mut tab, "#validation code.loc");
    let (file_part, line_col) = loc.split_once(':').unwrap();
    assert_eq!(file_part, "tenants/forecasting.yaml");
    assert!(
        line_col
            .split(':')
            .take(2)
            .all(|n| n.parse::<u32>().is_ok_and(|n| n > 0)),
        "file:line:column, got {loc}"
    );
    assert!(text(&mut tab, "#validation h2").contains(&broken[..12]));
    let cards = text(&mut tab, ".cards");
    assert!(cards.contains("fails validation"), "{cards}");
    assert!(
        cards.contains(&first[..12]),
        "the last good commit stays applied: {cards}"
    );
    assert!(text(&mut tab, "#last-cycle").contains("invalid commit"));
    assert_eq!(rows(&mut tab).len(), tenants);
    let shot = shoot(&mut tab, "daemon-broken-commit", 1280);
    let browser_time = browser_time + started.elapsed();
    assert!(
        !tab.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .contains(WEBHOOK_SECRET)
    );
    if std::env::var_os("KFTENANT_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::copy(&shot, &docs).unwrap();
        eprintln!("updated {}", docs.display());
    }
    eprintln!("browser time of the daemon test (pages, clicks, screenshots): {browser_time:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_page() {
    let (world, _iam, repo) = setup("status page secrets").await;
    commit_all(repo.dir.path(), "tenants");
    let cache = tempfile::tempdir().unwrap();
    // A repository URL with a token in it, on a port nothing listens on: the
    // fetch fails and its error is on the page, with neither token nor
    // webhook secret, and the URL shown without its credentials.
    let url_token = "ghp_urlTokenThatMustNotShow123";
    let env_token = "envTokenThatMustNotShow456";
    let port = d::free_port();
    let remote = format!("http://x-access-token:{url_token}@127.0.0.1:{port}/tenants.git");
    let daemon = d::start(
        &world,
        &remote,
        cache.path(),
        "1h",
        &[],
        &[("KFTENANT_GIT_TOKEN", env_token)],
    );
    d::wait_for("the fetch error", Duration::from_secs(30), || {
        !d::status(daemon.port)["last_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let r = d::http(daemon.port, "GET", "/", &[], b"");
    assert_eq!(r.code, 200);
    for secret in [url_token, env_token, WEBHOOK_SECRET] {
        assert!(!r.body.contains(secret), "{secret} on the page");
        assert!(r.headers.iter().all(|(_, v)| !v.contains(secret)));
    }
    let mut tab = browser().tab(1024, 768);
    tab.goto(&format!("http://127.0.0.1:{}/", daemon.port));
    let errors = text(&mut tab, "#errors");
    assert!(errors.contains("fetch"), "{errors}");
    assert!(
        text(&mut tab, "main").contains(&format!("http://127.0.0.1:{port}/tenants.git")),
        "the repository is named without its credentials"
    );
    assert!(text(&mut tab, ".cards").contains("nothing fetched yet"));
    let dom = tab.eval("document.documentElement.outerHTML");
    for secret in [url_token, env_token, WEBHOOK_SECRET] {
        assert!(
            !dom.as_str().unwrap().contains(secret),
            "{secret} in the DOM"
        );
    }
    let _ = repo;
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_and_follower_say_who_holds_the_lease() {
    let (world, _iam, repo) = setup("status page lease").await;
    commit_all(repo.dir.path(), "tenants");
    let lease = format!("{}-page-lease", repo.p);
    let args = [
        "--lease-name",
        lease.as_str(),
        "--lease-namespace",
        "default",
    ];
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = d::start(
        &world,
        repo.path(),
        c1.path(),
        "1h",
        &args,
        &[("POD_NAME", "replica-a")],
    );
    let b = d::start(
        &world,
        repo.path(),
        c2.path(),
        "1h",
        &args,
        &[("POD_NAME", "replica-b")],
    );
    d::wait_for("exactly one leader", Duration::from_secs(30), || {
        [a.port, b.port]
            .iter()
            .filter(|p| d::status(**p)["leader"] == true)
            .count()
            == 1
    });
    let (leader, follower, name) = if d::status(a.port)["leader"] == true {
        (a.port, b.port, "replica-a")
    } else {
        (b.port, a.port, "replica-b")
    };
    let mut tab = browser().tab(1024, 768);
    tab.goto(&format!("http://127.0.0.1:{leader}/"));
    let says = text(&mut tab, "#leadership");
    assert!(
        says.contains("leader")
            && says.contains(&format!(
                "this replica ({name}) holds lease default/{lease}"
            )),
        "{says}"
    );
    // The follower learns the holder at its next attempt (every 5 s).
    d::wait_for(
        "the follower to name the holder",
        Duration::from_secs(20),
        || {
            let r = d::http(follower, "GET", "/", &[], b"");
            r.body.contains(&format!("is held by {name}"))
        },
    );
    tab.goto(&format!("http://127.0.0.1:{follower}/"));
    let says = text(&mut tab, "#leadership");
    assert!(says.starts_with("Leadershipfollower"), "{says}");
    assert!(
        says.contains(&format!(
            "lease default/{lease} is held by {name}; this replica"
        )),
        "{says}"
    );
    shoot(&mut tab, "daemon-follower", 1024);
}
