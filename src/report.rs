//! Renderers: text (like `terraform plan`), Markdown (pull-request comments)
//! and JSON, all from the same [`Plan`] data. Printers write to any
//! `impl Write`, so tests render into a `Vec<u8>`.

use crate::applied::{ApplyReport, Outcome};
use crate::diag::Diagnostic;
use crate::model::Repository;
use crate::plan::{Action, Change, Plan, PlanKind, PullRequest, Verdict};
use serde_json::Value as Json;
use similar::TextDiff;
use std::io::{self, Write};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable, like `terraform plan`.
    Text,
    /// Markdown for pull-request comments.
    Markdown,
    /// Versioned JSON for machines.
    Json,
}

/// Code hosts refuse longer comments (GitHub: 65,536 characters); stay under it.
pub const MARKDOWN_PART_LIMIT: usize = 65_000;

fn pretty(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).expect("json serialises"),
    }
}

fn short(v: &Json) -> String {
    match v {
        Json::Null => "(none)".into(),
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A unified diff of two values (pretty JSON), `-` live and `+` git.
pub fn unified(before: &Json, after: &Json) -> String {
    let (b, a) = (pretty(before) + "\n", pretty(after) + "\n");
    TextDiff::from_lines(&b, &a)
        .unified_diff()
        .context_radius(3)
        .header("live", "git")
        .to_string()
}

/// The body of one change: field diffs, or the document it creates or deletes.
fn change_body(c: &Change) -> String {
    let mut out = String::new();
    match c.action {
        Action::Update | Action::Adopt => {
            for d in &c.diffs {
                if d.before.is_object()
                    || d.after.is_object()
                    || d.before.is_array()
                    || d.after.is_array()
                {
                    out.push_str(&format!("{}:\n{}", d.field, unified(&d.before, &d.after)));
                } else {
                    out.push_str(&format!(
                        "{}: {} -> {}\n",
                        d.field,
                        short(&d.before),
                        short(&d.after)
                    ));
                }
            }
        }
        Action::Create => {
            if let Some(a) = c.created().filter(|a| !a.is_string()) {
                out.push_str(&pretty(&a));
                out.push('\n');
            }
        }
        Action::Delete => {}
    }
    out
}

fn summary_line(p: &Plan) -> String {
    let s = &p.summary;
    let tenants = if s.tenants_changed == 1 {
        "tenant"
    } else {
        "tenants"
    };
    let adopt = if s.adopt > 0 {
        format!("{} to adopt, ", s.adopt)
    } else {
        String::new()
    };
    let mut line = format!(
        "{}: {adopt}{} to create, {} to update, {} to delete ({} {tenants}).",
        match p.kind {
            PlanKind::Plan => "Plan",
            PlanKind::Drift => "Drift",
        },
        s.create,
        s.update,
        s.delete,
        s.tenants_changed
    );
    if !p.deleted_tenants.is_empty() {
        line.push_str(&format!(
            " {} tenant{} deleted with {} namespace{}.",
            p.deleted_tenants.len(),
            plural(p.deleted_tenants.len()),
            if p.deleted_tenants.len() == 1 {
                "its"
            } else {
                "their"
            },
            plural(p.deleted_tenants.len())
        ));
    }
    if s.drift > 0 {
        line.push_str(&format!(" {} drifted.", s.drift));
    }
    if s.conflicts > 0 {
        line.push_str(&format!(
            " {} conflict{}.",
            s.conflicts,
            plural(s.conflicts)
        ));
    }
    if s.held > 0 {
        line.push_str(&format!(
            " {} deletion{} held back.",
            s.held,
            plural(s.held)
        ));
    }
    line
}

/// The plural ending of a count: "" for 1, else "s".
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What to say when there is no change to make: only "match" when nothing
/// stands in the way.
fn no_changes(p: &Plan) -> String {
    if p.verdict() == Verdict::Converged {
        "No changes. IAM and the cluster match git.".into()
    } else {
        let mut why = Vec::new();
        if p.summary.conflicts > 0 {
            why.push(format!(
                "{} conflict{}",
                p.summary.conflicts,
                plural(p.summary.conflicts)
            ));
        }
        if p.summary.held > 0 {
            why.push(format!(
                "{} deletion{} held back",
                p.summary.held,
                plural(p.summary.held)
            ));
        }
        format!(
            "No changes can be made, yet IAM and the cluster do not match git: {}.",
            why.join(" and ")
        )
    }
}

/// The first 12 characters of a commit id (characters, not bytes: the id
/// may come from the command line).
fn short_commit(c: &str) -> String {
    c.chars().take(12).collect()
}

fn header(p: &Plan) -> String {
    let what = match p.kind {
        PlanKind::Plan => "kftenant plan",
        PlanKind::Drift => "kftenant drift report",
    };
    match &p.source_commit {
        Some(c) => format!(
            "{what} for cluster `{}` at commit {}",
            p.cluster,
            short_commit(c)
        ),
        None => format!("{what} for cluster `{}`", p.cluster),
    }
}

/// The tenants a pull request changes (text or Markdown heading level).
fn pull_request_text(pr: &PullRequest, markdown: bool) -> String {
    let mut out = format!(
        "{}Tenants changed by this pull request (against {}, {}): {}\n",
        if markdown { "#### " } else { "" },
        pr.base,
        short_commit(&pr.base_commit),
        pr.tenants.len()
    );
    for (t, kind) in &pr.tenants {
        out.push_str(&format!("- {t} ({kind})\n"));
    }
    out.push('\n');
    out
}

/// Renders the plan in `format` (all Markdown parts, one after the other).
pub fn write_plan(p: &Plan, format: Format, w: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Text => write_text(p, w),
        Format::Json => write_json(p, w),
        Format::Markdown => {
            for part in markdown_parts(p, MARKDOWN_PART_LIMIT) {
                w.write_all(part.as_bytes())?;
            }
            Ok(())
        }
    }
}

/// Renders an apply report in `format`.
pub fn write_apply(r: &ApplyReport, format: Format, w: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Text => write_apply_text(r, w),
        Format::Markdown => write_apply_markdown(r, w),
        Format::Json => write_apply_json(r, w),
    }
}

fn group_title(t: Option<&str>) -> String {
    match t {
        Some(t) => format!("tenant {t}"),
        None => "shared policies".into(),
    }
}

/// Changes grouped in plan order by tenant (shared policies under `None`).
fn groups(p: &Plan) -> Vec<(Option<&str>, Vec<&Change>)> {
    let mut out: Vec<(Option<&str>, Vec<&Change>)> = Vec::new();
    for c in &p.changes {
        match out.last_mut() {
            Some((t, list)) if *t == c.tenant.as_deref() => list.push(c),
            _ => out.push((c.tenant.as_deref(), vec![c])),
        }
    }
    out
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// Renders the plan as text.
pub fn write_text(p: &Plan, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "{}\n", header(p))?;
    if let Some(pr) = &p.pull_request {
        write!(w, "{}", pull_request_text(pr, false))?;
    }
    if !p.deleted_tenants.is_empty() {
        writeln!(
            w,
            "Deletes tenants, with their namespaces and everything in them (notebooks, volumes, pipelines):"
        )?;
        for t in &p.deleted_tenants {
            writeln!(w, "  - {t}")?;
        }
        writeln!(w)?;
    }
    if !p.held.is_empty() {
        writeln!(w, "Deletions held back (nothing of these is deleted):")?;
        for h in &p.held {
            writeln!(
                w,
                "  ! {} ({})\n      {}",
                h.tenant,
                h.resources.join(", "),
                h.reason
            )?;
        }
        writeln!(w)?;
    }
    if !p.conflicts.is_empty() {
        writeln!(
            w,
            "Conflicts (live resources kftenant wants but does not own; not touched):"
        )?;
        for c in &p.conflicts {
            writeln!(w, "  ! {}\n      {}", c.address, c.reason)?;
        }
        writeln!(w)?;
    }
    if !p.drift.is_empty() {
        writeln!(w, "Drift (managed resources changed outside git):")?;
        for d in &p.drift {
            writeln!(
                w,
                "  ~ {}: {} [{}]",
                d.address,
                d.message,
                d.fields.join(", ")
            )?;
        }
        writeln!(w)?;
    }
    if p.changes.is_empty() {
        writeln!(w, "{}", no_changes(p))?;
    } else {
        for (tenant, list) in groups(p) {
            writeln!(w, "# {}", group_title(tenant))?;
            for c in list {
                writeln!(w, "  {} {}  ({})", c.action.symbol(), c.address, c.reason)?;
                let body = change_body(c);
                if !body.is_empty() {
                    write!(w, "{}", indent(&body, "      "))?;
                }
            }
            writeln!(w)?;
        }
    }
    if !p.unmanaged_access.is_empty() {
        writeln!(
            w,
            "Access not in git (kept; `[members] prune_unmanaged = true` deletes it):"
        )?;
        for a in &p.unmanaged_access {
            writeln!(
                w,
                "  ? {}: {} as {} ({})",
                a.tenant, a.user, a.role, a.binding
            )?;
        }
        writeln!(w)?;
    }
    if !p.kept.is_empty() {
        writeln!(w, "Kept:")?;
        for k in &p.kept {
            writeln!(w, "  = {}: {}", k.address, k.reason)?;
        }
        writeln!(w)?;
    }
    writeln!(w, "{}", summary_line(p))
}

/// Renders the plan as versioned JSON.
pub fn write_json(p: &Plan, w: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, p)?;
    writeln!(w)
}

/// Renders the plans of several clusters (one plan: exactly [`write_plan`]).
pub fn write_plans(plans: &[Plan], format: Format, w: &mut impl Write) -> io::Result<()> {
    if let [p] = plans {
        return write_plan(p, format, w);
    }
    match format {
        Format::Text => {
            for p in plans {
                write_text(p, w)?;
                writeln!(w)?;
            }
            writeln!(w, "{} clusters:", plans.len())?;
            for p in plans {
                writeln!(w, "  {}: {}", p.cluster, cluster_summary(p))?;
            }
            Ok(())
        }
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut *w,
                &serde_json::json!({
                    "format_version": crate::plan::PLAN_FORMAT_VERSION,
                    "clusters": plans,
                }),
            )?;
            writeln!(w)
        }
        Format::Markdown => {
            for part in markdown_parts_all(plans, MARKDOWN_PART_LIMIT) {
                w.write_all(part.as_bytes())?;
            }
            Ok(())
        }
    }
}

/// One cluster's plan in a line: its summary, or why nothing can be done.
fn cluster_summary(p: &Plan) -> String {
    if p.changes.is_empty() {
        no_changes(p)
    } else {
        summary_line(p)
    }
}

/// The plans of several clusters as Markdown: a table of every cluster at
/// the top, then each cluster's plan; split into parts under `limit`
/// characters. One plan: exactly [`markdown_parts`].
pub fn markdown_parts_all(plans: &[Plan], limit: usize) -> Vec<String> {
    if let [p] = plans {
        return markdown_parts(p, limit);
    }
    let what = match plans.first().map(|p| p.kind) {
        Some(PlanKind::Drift) => "kftenant drift report",
        _ => "kftenant plan",
    };
    let commit = plans
        .iter()
        .find_map(|p| p.source_commit.as_deref())
        .map(|c| format!(" at commit {}", short_commit(c)))
        .unwrap_or_default();
    let mut head = format!(
        "### {what}: {} clusters{commit}\n\n| cluster | create | update | delete | drift | conflicts | held | |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
        plans.len()
    );
    for p in plans {
        let s = &p.summary;
        let state = match p.verdict() {
            Verdict::Converged => "matches git",
            Verdict::Changes => "changes",
            Verdict::Blocked => ":warning: blocked",
        };
        head.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {state} |\n",
            p.cluster, s.create, s.update, s.delete, s.drift, s.conflicts, s.held
        ));
    }
    head.push('\n');
    let mut blocks = vec![head];
    for p in plans {
        blocks.extend(markdown_blocks(p));
    }
    pack(blocks, limit)
}

/// Renders the plan as Markdown, split into parts under [`MARKDOWN_PART_LIMIT`] characters.
pub fn markdown_parts(p: &Plan, limit: usize) -> Vec<String> {
    pack(markdown_blocks(p), limit)
}

/// The plan as Markdown blocks, each kept whole in one part where it fits.
fn markdown_blocks(p: &Plan) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut head = format!("### {}\n\n**{}**\n\n", header(p), summary_line(p));
    if p.changes.is_empty() {
        head.push_str(&no_changes(p));
        head.push_str("\n\n");
    }
    if let Some(pr) = &p.pull_request {
        head.push_str(&pull_request_text(pr, true));
    }
    blocks.push(head);
    if !p.deleted_tenants.is_empty() {
        let mut b = String::from(
            "#### :rotating_light: Deletes tenants, with their namespaces and everything in them (notebooks, volumes, pipelines)\n\n",
        );
        for t in &p.deleted_tenants {
            b.push_str(&format!("- `{t}`\n"));
        }
        blocks.push(b + "\n");
    }
    if !p.held.is_empty() {
        let mut b = String::from(
            "#### :no_entry: Deletions held back (nothing of these is deleted)\n\n| tenant | would delete | reason |\n|---|---|---|\n",
        );
        for h in &p.held {
            b.push_str(&format!(
                "| `{}` | {} | {} |\n",
                h.tenant,
                h.resources
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                h.reason.replace('|', "\\|")
            ));
        }
        blocks.push(b + "\n");
    }
    if !p.conflicts.is_empty() {
        let mut b = String::from(
            "#### :warning: Conflicts (not touched)\n\n| resource | reason |\n|---|---|\n",
        );
        for c in &p.conflicts {
            b.push_str(&format!(
                "| `{}` | {} |\n",
                c.address,
                c.reason.replace('|', "\\|")
            ));
        }
        blocks.push(b + "\n");
    }
    if !p.drift.is_empty() {
        let mut b =
            String::from("#### Drift (changed outside git)\n\n| resource | fields |\n|---|---|\n");
        for d in &p.drift {
            b.push_str(&format!("| `{}` | {} |\n", d.address, d.fields.join(", ")));
        }
        blocks.push(b + "\n");
    }
    for (tenant, list) in groups(p) {
        let counts = |a: Action| list.iter().filter(|c| c.action == a).count();
        let adopt = match counts(Action::Adopt) {
            0 => String::new(),
            n => format!("{n} to adopt, "),
        };
        let mut b = format!(
            "<details><summary><b>{}</b>: {adopt}{} to create, {} to update, {} to delete</summary>\n\n",
            group_title(tenant),
            counts(Action::Create),
            counts(Action::Update),
            counts(Action::Delete)
        );
        for c in list {
            b.push_str(&format!(
                "- `{}` `{}`: {}\n",
                c.action.symbol(),
                c.address,
                c.reason
            ));
            let body = change_body(c);
            if !body.is_empty() {
                let lang = if matches!(c.action, Action::Update | Action::Adopt) {
                    "diff"
                } else {
                    "json"
                };
                b.push_str(&format!("\n```{lang}\n{body}```\n\n"));
            }
        }
        b.push_str("</details>\n\n");
        blocks.push(b);
    }
    if !p.unmanaged_access.is_empty() {
        let mut b = String::from(
            "#### Access not in git (kept; `[members] prune_unmanaged = true` deletes it)\n\n| tenant | user | role |\n|---|---|---|\n",
        );
        for a in &p.unmanaged_access {
            b.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                a.tenant,
                a.user.replace('|', "\\|"),
                a.role.replace('|', "\\|")
            ));
        }
        blocks.push(b + "\n");
    }
    if !p.kept.is_empty() {
        let mut b = String::from("#### Kept\n\n");
        for k in &p.kept {
            b.push_str(&format!("- `{}`: {}\n", k.address, k.reason));
        }
        blocks.push(b + "\n");
    }
    blocks
}

/// Packs blocks into parts under `limit` characters; a block too large on its
/// own is cut, saying so, and the JSON output has it whole.
fn pack(blocks: Vec<String>, limit: usize) -> Vec<String> {
    const MARK: usize = 64; // room for the "(part i/n)" line
    let budget = limit.saturating_sub(MARK);
    let mut parts: Vec<String> = vec![String::new()];
    for mut b in blocks {
        if b.chars().count() > budget {
            let note = "\n\n_(cut: too long for one comment; see the JSON plan)_\n</details>\n\n";
            let keep: String = b
                .chars()
                .take(budget.saturating_sub(note.len() + 8))
                .collect();
            // Close an open code fence so the rest of the comment renders.
            let fence = if keep.matches("```").count() % 2 == 1 {
                "\n```"
            } else {
                ""
            };
            b = format!("{keep}{fence}{note}");
        }
        let last = parts.last_mut().expect("one part");
        if last.chars().count() + b.chars().count() > budget && !last.is_empty() {
            parts.push(b);
        } else {
            last.push_str(&b);
        }
    }
    let n = parts.len();
    if n > 1 {
        for (i, part) in parts.iter_mut().enumerate() {
            *part = format!("_(part {}/{n})_\n\n{part}", i + 1);
        }
    }
    parts
}

/// Renders an apply report as text.
pub fn write_apply_text(r: &ApplyReport, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "Apply results:")?;
    for s in &r.results {
        match &s.outcome {
            Outcome::Done => writeln!(w, "  done     {} {}", s.action.symbol(), s.address)?,
            Outcome::Failed { code, message } => writeln!(
                w,
                "  FAILED   {} {}\n           {code}: {message}",
                s.action.symbol(),
                s.address
            )?,
            Outcome::Skipped { after_failure_of } => writeln!(
                w,
                "  skipped  {} {} (after {after_failure_of} failed)",
                s.action.symbol(),
                s.address
            )?,
            Outcome::Stopped { code, reason } => writeln!(
                w,
                "  skipped  {} {} ({code}: {reason})",
                s.action.symbol(),
                s.address
            )?,
        }
    }
    for c in &r.conflicts {
        writeln!(w, "  CONFLICT {}\n           {}", c.address, c.reason)?;
    }
    for h in &r.held {
        writeln!(w, "  HELD     {}\n           {}", h.tenant, h.reason)?;
    }
    writeln!(w, "{}", apply_summary(r))
}

/// `Apply: 3 done, 0 failed, 0 skipped.`, with what could not be done.
fn apply_summary(r: &ApplyReport) -> String {
    let m = &r.summary;
    let mut line = format!(
        "Apply: {} done, {} failed, {} skipped.",
        m.done, m.failed, m.skipped
    );
    if m.conflicts > 0 {
        line.push_str(&format!(
            " {} conflict{} not touched.",
            m.conflicts,
            plural(m.conflicts)
        ));
    }
    if m.held > 0 {
        line.push_str(&format!(
            " {} deletion{} held back.",
            m.held,
            plural(m.held)
        ));
    }
    line
}

/// Renders an apply report as Markdown.
pub fn write_apply_markdown(r: &ApplyReport, w: &mut impl Write) -> io::Result<()> {
    writeln!(
        w,
        "### kftenant apply\n\n**{}**\n\n| | change | result |\n|---|---|---|",
        apply_summary(r)
    )?;
    for s in &r.results {
        let result = match &s.outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Failed { code, message } => {
                format!("**failed**: `{code}` {}", message.replace('|', "\\|"))
            }
            Outcome::Skipped { after_failure_of } => {
                format!("skipped (after `{after_failure_of}` failed)")
            }
            Outcome::Stopped { code, reason } => {
                format!("skipped (`{code}`: {})", reason.replace('|', "\\|"))
            }
        };
        writeln!(
            w,
            "| `{}` | `{}` | {result} |",
            s.action.symbol(),
            s.address
        )?;
    }
    for c in &r.conflicts {
        writeln!(
            w,
            "| `!` | `{}` | **conflict**: {} |",
            c.address,
            c.reason.replace('|', "\\|")
        )?;
    }
    for h in &r.held {
        writeln!(
            w,
            "| `!` | tenant `{}` | **held back**: {} |",
            h.tenant,
            h.reason.replace('|', "\\|")
        )?;
    }
    Ok(())
}

/// Renders an apply report as JSON.
pub fn write_apply_json(r: &ApplyReport, w: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, r)?;
    writeln!(w)
}

/// Lists the files a valid repository was read from, with the tenants each
/// tenant file defines: what `validate` read, so a file it did not read is
/// noticed.
pub fn write_files_read(repos: &[Repository], w: &mut impl Write) -> io::Result<()> {
    let Some(first) = repos.first() else {
        return Ok(());
    };
    writeln!(w, "read {} files:", first.files.len())?;
    for f in &first.files {
        // A tenant on several clusters is named once, with where it is when
        // that is not everywhere.
        let mut tenants: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in repos {
            for t in r.tenants.iter().filter(|t| t.file == *f) {
                match tenants.iter_mut().find(|(n, _)| *n == t.name) {
                    Some((_, on)) => on.push(&r.config.cluster.name),
                    None => tenants.push((&t.name, vec![&r.config.cluster.name])),
                }
            }
        }
        let names: Vec<String> = tenants
            .iter()
            .map(|(n, on)| {
                if on.len() == repos.len() {
                    n.to_string()
                } else {
                    format!("{n} ({})", on.join(", "))
                }
            })
            .collect();
        if names.is_empty() {
            writeln!(w, "  {f}")?;
        } else {
            writeln!(w, "  {f}: {}", names.join(", "))?;
        }
    }
    Ok(())
}

/// The report of `kftenant import`: what was written where, the notes to
/// review, and what to run next.
pub fn write_import(
    imported: &crate::import::Imported,
    dir: &std::path::Path,
    w: &mut impl Write,
) -> io::Result<()> {
    let dir = dir.display();
    writeln!(
        w,
        "kftenant import: {} tenant{} written to {dir} ({} files)",
        imported.tenants.len(),
        plural(imported.tenants.len()),
        imported.files.len()
    )?;
    for t in &imported.tenants {
        let adopts: Vec<&str> = [("the role", t.adopt_role), ("the Profile", t.adopt_profile)]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(what, _)| what)
            .collect();
        let adopts = if adopts.is_empty() {
            "already kftenant's".to_string()
        } else {
            format!("adopts {}", adopts.join(" and "))
        };
        writeln!(w, "  {}: role {} ({adopts})", t.file, t.role_arn)?;
    }
    if !imported.notes.is_empty() {
        writeln!(w, "\nNotes (review them before applying):")?;
        for n in &imported.notes {
            writeln!(w, "  {} ({}): {}", n.profile, n.kind.label(), n.message)?;
        }
    }
    if imported.problems.is_empty() {
        writeln!(
            w,
            "\nNext: `kftenant validate {dir}`, then `kftenant plan {dir} --live`: one `adopt` change per resource taken over (exit code 2); review it, then `kftenant apply {dir}`."
        )
    } else {
        writeln!(
            w,
            "\nThe repository does not validate ({} problem{}, on standard error): kftenant's rules refuse what is live. Fix the files (or kftenant.toml) before planning.",
            imported.problems.len(),
            plural(imported.problems.len())
        )
    }
}

/// Writes validation problems, one `file:line:column: message` each, and a count.
pub fn write_diagnostics(diags: &[Diagnostic], w: &mut impl Write) -> io::Result<()> {
    for d in diags {
        writeln!(w, "{d}")?;
    }
    let total = crate::diag::count(diags);
    let not_shown: usize = diags.iter().map(|d| d.not_shown).sum();
    writeln!(
        w,
        "{total} problem{} found{}; nothing was planned or applied.",
        if total == 1 { "" } else { "s" },
        if not_shown > 0 {
            format!(" ({not_shown} not shown)")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_splits_under_the_limit_and_numbers_parts() {
        let blocks: Vec<String> = (0..10)
            .map(|i| format!("block {i} {}\n", "x".repeat(300)))
            .collect();
        let parts = pack(blocks, 1000);
        assert!(parts.len() > 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(
                p.chars().count() <= 1000,
                "part {i} is {} chars",
                p.chars().count()
            );
            assert!(p.starts_with(&format!("_(part {}/{})_", i + 1, parts.len())));
        }
        let all: String = parts.concat();
        for i in 0..10 {
            assert!(all.contains(&format!("block {i} ")));
        }
    }

    #[test]
    fn an_oversized_block_is_cut_with_its_fence_closed() {
        let big = format!("<details>\n\n```diff\n{}", "+ line\n".repeat(1000));
        let parts = pack(vec!["head\n".into(), big], 2000);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].chars().count() <= 2000);
        assert_eq!(
            parts[1].matches("```").count() % 2,
            0,
            "fences are balanced"
        );
        assert!(parts[1].contains("cut: too long for one comment"));
    }

    #[test]
    fn single_part_has_no_part_marker() {
        let parts = pack(vec!["a\n".into(), "b\n".into()], 1000);
        assert_eq!(parts, vec!["a\nb\n".to_string()]);
    }
}
