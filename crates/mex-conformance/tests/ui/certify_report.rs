// A report (edited, or assembled by hand) cannot be written as a
// certificate: `write_certificate` takes only the harness's sealed outcome.
fn forge(report: &mex_conformance::ConformanceReport) {
    let _ = mex_conformance::write_certificate(std::path::Path::new("certs"), report, None);
}

fn main() {}
