//! Output delivery: how a command's output is cut into Receive responses.

use super::*;

/// Decides which bytes go into which Receive response.
///
/// Without faults everything, End streams and Done go out in one response (stdout in two
/// Stream elements split at an arbitrary byte, so clients must concatenate). A CLIXML stderr
/// starts with the `#< CLIXML` marker alone in its own response, as Windows sends it.
/// `noise` spreads stdout and the CLIXML document over several responses, cut anywhere.
pub(super) fn plan_output(exec: &Execution, noise: bool, rng: &mut SplitMix64) -> VecDeque<Piece> {
    let mut q = VecDeque::new();
    let marker = powershell::CLIXML_MARKER.as_bytes();
    let (marker_first, stderr_rest) = match exec.stderr.strip_prefix(marker) {
        Some(rest) => (true, rest),
        None => (false, &exec.stderr[..]),
    };
    if marker_first {
        q.push_back(Piece::Data(StreamName::Stderr, marker.to_vec()));
        q.push_back(Piece::Break);
    }
    if !noise {
        if !exec.stdout.is_empty() {
            let cut = 1 + rng.below(exec.stdout.len() as u64) as usize;
            q.push_back(Piece::Data(StreamName::Stdout, exec.stdout[..cut].to_vec()));
            if cut < exec.stdout.len() {
                q.push_back(Piece::Data(StreamName::Stdout, exec.stdout[cut..].to_vec()));
            }
        }
        if !stderr_rest.is_empty() {
            q.push_back(Piece::Data(StreamName::Stderr, stderr_rest.to_vec()));
        }
        return q;
    }

    // stdout in three parts, one cut placed inside a multi-byte UTF-8 sequence when there is one.
    let out = &exec.stdout;
    let mut cuts: Vec<usize> = Vec::new();
    if let Some(i) = out.iter().position(|b| *b >= 0xC0) {
        cuts.push(i + 1);
    }
    while cuts.len() < 2 && out.len() > 2 {
        cuts.push(1 + rng.below(out.len() as u64 - 1) as usize);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut stdout_parts = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain(std::iter::once(out.len())) {
        if c > prev {
            stdout_parts.push(out[prev..c].to_vec());
            prev = c;
        }
    }
    // stderr in blocks of about 6 KiB, each cut at an arbitrary byte (mid-tag, mid-escape).
    let mut stderr_parts = Vec::new();
    let mut pos = 0;
    while pos < stderr_rest.len() {
        let len = (STDERR_BLOCK / 2 + rng.below(STDERR_BLOCK as u64) as usize)
            .min(stderr_rest.len() - pos);
        stderr_parts.push(stderr_rest[pos..pos + len].to_vec());
        pos += len;
    }
    let turns = stdout_parts.len().max(stderr_parts.len());
    let mut so = stdout_parts.into_iter();
    let mut se = stderr_parts.into_iter();
    for i in 0..turns {
        if i > 0 {
            q.push_back(Piece::Break);
        }
        if let Some(p) = so.next() {
            q.push_back(Piece::Data(StreamName::Stdout, p));
        }
        if let Some(p) = se.next() {
            q.push_back(Piece::Data(StreamName::Stderr, p));
        }
    }
    q
}

pub(super) fn is_absolute_path(line: &str) -> bool {
    let b = line.as_bytes();
    line.starts_with(r"\\")
        || (b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn push_stream(body: &mut String, name: StreamName, cmd_id: &str, data: &[u8]) {
    let _ = write!(
        body,
        "<rsp:Stream Name=\"{}\" CommandId=\"{cmd_id}\">{}</rsp:Stream>",
        name.as_str(),
        B64.encode(data)
    );
}

/// One ReceiveResponse body from what is ready, within the client's MaxEnvelopeSize.
pub(super) fn build_receive(st: &mut CmdState, cmd_id: &str, max_envelope: usize) -> String {
    let mut budget = max_envelope.saturating_sub(RECEIVE_OVERHEAD).max(2048);
    let mut body = String::from("<s:Body><rsp:ReceiveResponse>");
    let mut sent_any = false;
    while let Some(piece) = st.queue.pop_front() {
        match piece {
            Piece::Break => {
                if sent_any {
                    break;
                }
            }
            Piece::Data(name, data) => {
                let room = budget.saturating_sub(STREAM_OVERHEAD) / 4 * 3;
                if room == 0 {
                    st.queue.push_front(Piece::Data(name, data));
                    break;
                }
                if data.len() > room {
                    let (now, later) = data.split_at(room);
                    push_stream(&mut body, name, cmd_id, now);
                    st.queue.push_front(Piece::Data(name, later.to_vec()));
                    break;
                }
                budget = budget.saturating_sub(STREAM_OVERHEAD + b64_len(data.len()));
                push_stream(&mut body, name, cmd_id, &data);
                sent_any = true;
            }
        }
    }
    if st.queue.is_empty() && st.endless {
        // A full chunk per Receive, for ever.
        let room = budget.saturating_sub(STREAM_OVERHEAD) / 4 * 3;
        let mut chunk = Vec::with_capacity(room);
        while chunk.len() + 64 < room {
            st.endless_lines += 1;
            let _ = write!(
                ByteWriter(&mut chunk),
                "Processing mailbox database item {:>10} of unknown ...\r\n",
                st.endless_lines
            );
        }
        push_stream(&mut body, StreamName::Stdout, cmd_id, &chunk);
    }
    if st.queue.is_empty() && !st.endless {
        let _ = write!(
            body,
            "<rsp:Stream Name=\"stdout\" CommandId=\"{cmd_id}\" End=\"true\"></rsp:Stream>\
             <rsp:Stream Name=\"stderr\" CommandId=\"{cmd_id}\" End=\"true\"></rsp:Stream>\
             <rsp:CommandState CommandId=\"{cmd_id}\" State=\"{STATE_DONE}\"><rsp:ExitCode>{}</rsp:ExitCode></rsp:CommandState>",
            st.exit_code
        );
        st.done_sent = true;
    } else {
        let _ = write!(
            body,
            "<rsp:CommandState CommandId=\"{cmd_id}\" State=\"{STATE_RUNNING}\"></rsp:CommandState>"
        );
    }
    body.push_str("</rsp:ReceiveResponse></s:Body>");
    body
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
