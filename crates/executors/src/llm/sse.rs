//! A minimal server-sent-events decoder (the part both providers use: `event:` and `data:`).

/// One event: its `event:` name (empty when absent) and its `data:` lines joined by `\n`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub event: String,
    pub data: String,
}

/// Feeds bytes, yields complete events.
#[derive(Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
    current: Event,
    has_data: bool,
}

/// Largest line kept while waiting for its end (a provider never sends one this long).
const MAX_LINE: usize = 16 * 1024 * 1024;

impl Decoder {
    /// Adds `chunk` and returns the events it completed. Fails on a line over 16 MiB or one that
    /// is not UTF-8.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line =
                String::from_utf8(line).map_err(|_| "event stream is not UTF-8".to_owned())?;
            self.line(&line, &mut out);
        }
        if self.buf.len() > MAX_LINE {
            return Err("event stream line over 16 MiB".to_owned());
        }
        Ok(out)
    }

    /// Ends the stream, returning a last event not followed by a blank line.
    pub fn finish(&mut self) -> Option<Event> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let mut out = Vec::new();
            self.line(&String::from_utf8_lossy(&rest), &mut out);
            if let Some(e) = out.pop() {
                return Some(e);
            }
        }
        self.has_data.then(|| {
            self.has_data = false;
            std::mem::take(&mut self.current)
        })
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        if line.is_empty() {
            if self.has_data || !self.current.event.is_empty() {
                out.push(std::mem::take(&mut self.current));
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.current.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_chunks() {
        let mut d = Decoder::default();
        let mut got = d.push(b"event: a\ndata: {\"x\":").unwrap_or_default();
        assert!(got.is_empty());
        got = d
            .push(b"1}\n\n: ping\n\ndata: [DONE]\r\n\r\n")
            .unwrap_or_default();
        assert_eq!(
            got,
            vec![
                Event {
                    event: "a".into(),
                    data: "{\"x\":1}".into()
                },
                Event {
                    event: String::new(),
                    data: "[DONE]".into()
                }
            ]
        );
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn last_event_without_blank_line() {
        let mut d = Decoder::default();
        assert!(d.push(b"data: 1\n").unwrap_or_default().is_empty());
        assert_eq!(
            d.finish(),
            Some(Event {
                event: String::new(),
                data: "1".into()
            })
        );
    }
}
