// Outside code cannot make a sealed suite outcome: its fields are private
// and it has no constructor, so only the harness can produce one.
fn forge(
    report: mex_conformance::ConformanceReport,
    code: mex_runtime::CodeDigest,
) -> mex_conformance::SuiteOutcome {
    mex_conformance::SuiteOutcome { report, code }
}

fn main() {}
