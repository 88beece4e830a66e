//! A batch of `(section, seats)` requests laid out flat: one allocation per batch however many
//! requests, so the writer's group commit pays for the requests, not for bookkeeping.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    sections: Vec<u32>,
    /// `seats[ends[i - 1]..ends[i]]` are the seats of request `i`.
    ends: Vec<u32>,
    seats: Vec<u32>,
}

impl Batch {
    pub fn with_capacity(requests: usize, seats: usize) -> Batch {
        Batch {
            sections: Vec::with_capacity(requests),
            ends: Vec::with_capacity(requests),
            seats: Vec::with_capacity(seats),
        }
    }

    pub fn from_requests(requests: &[(u32, Vec<u32>)]) -> Batch {
        let mut batch = Batch::with_capacity(requests.len(), requests.iter().map(|r| r.1.len()).sum());
        for (section, seats) in requests {
            batch.push(*section, seats);
        }
        batch
    }

    pub fn push(&mut self, section: u32, seats: &[u32]) {
        self.seats.extend_from_slice(seats);
        self.end_request(section);
    }

    /// Add one seat to the request being built; `end_request` closes it.
    pub fn push_seat(&mut self, seat: u32) {
        self.seats.push(seat);
    }

    pub fn end_request(&mut self, section: u32) {
        self.sections.push(section);
        self.ends.push(self.seats.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.sections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Seats of the request being built and not yet ended.
    pub fn open_seats(&self) -> &[u32] {
        let start = self.ends.last().copied().unwrap_or(0) as usize;
        &self.seats[start..]
    }

    pub fn get(&self, index: usize) -> (u32, &[u32]) {
        let start = if index == 0 {
            0
        } else {
            self.ends[index - 1] as usize
        };
        (
            self.sections[index],
            &self.seats[start..self.ends[index] as usize],
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u32])> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }
}
