//! Splitting a byte stream into length-prefixed frames, without I/O.

use crate::error::SessionError;

/// Split a byte stream into length-prefixed frames without I/O: feed it what
/// arrived, take out whole frame bodies. Used by tests, fuzzing and drivers
/// that read in bulk.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Append received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body, if one has fully arrived.
    ///
    /// # Errors
    /// [`SessionError::MalformedFrame`] for a zero-length frame.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, SessionError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        if len == 0 {
            return Err(SessionError::MalformedFrame);
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        let frame = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_decoder_handles_partial_input_and_zero_length() {
        let mut d = FrameDecoder::default();
        d.extend(&[0, 3, 1]);
        assert!(d.next_frame().unwrap().is_none());
        d.extend(&[2, 3, 0]);
        assert_eq!(d.next_frame().unwrap().unwrap(), vec![1, 2, 3]);
        d.extend(&[0]);
        assert!(matches!(d.next_frame(), Err(SessionError::MalformedFrame)));
    }
}
