//! The sender's record of its slots: free, loaned, or in flight. Every
//! transport keeps it the same way; only what a slot in flight waits for
//! differs: a set of events, which may come in any order. Every transport
//! today waits for one: the receiver returned the slot (shm and card), or
//! the receiver's credit board counts its release (RDMA). A slot is free
//! again once every event it waits for has come.
//!
//! The calls on the send path are `#[inline]`: the senders are generic
//! and built in the caller's crate, which could not inline a plain call
//! into this one.
//!
//! The ledger is this process's own: nothing the peer writes changes it
//! except through [`Ledger::settle`], which refuses a slot that is not in
//! flight, out of range, or settled twice.

/// Events a slot in flight waits for, one bit each.
pub(crate) type Events = u8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Loaned,
    /// Sent; the events still to come.
    InFlight(Events),
}

/// Why [`Ledger::settle`] refused an event: the peer named a slot it has
/// no business naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misstep {
    /// Past the last slot.
    OutOfRange,
    /// A slot that is free or loaned.
    NotInFlight,
    /// An event that already came for this send.
    Twice,
}

/// Which of a sender's slots are free, loaned or in flight.
#[derive(Debug)]
pub(crate) struct Ledger {
    slots: Vec<State>,
    /// Free slots, the next loan at the end.
    free: Vec<u32>,
    in_flight: u32,
}

impl Ledger {
    /// `count` free slots; loans start at slot 0.
    pub(crate) fn new(count: u32) -> Ledger {
        Ledger {
            slots: vec![State::Free; count as usize],
            free: (0..count).rev().collect(),
            in_flight: 0,
        }
    }

    /// Loans a free slot, if there is one.
    #[inline]
    pub(crate) fn loan(&mut self) -> Option<u32> {
        let index = self.free.pop()?;
        self.slots[index as usize] = State::Loaned;
        Some(index)
    }

    /// A loan given back unsent (dropped, or its send failed).
    #[inline]
    pub(crate) fn unloan(&mut self, index: u32) {
        debug_assert_eq!(self.slots[index as usize], State::Loaned);
        self.slots[index as usize] = State::Free;
        self.free.push(index);
    }

    /// A loaned slot was sent; it is free again once every event in
    /// `awaits` has been settled.
    #[inline]
    pub(crate) fn send(&mut self, index: u32, awaits: Events) {
        debug_assert_eq!(self.slots[index as usize], State::Loaned);
        debug_assert_ne!(awaits, 0);
        self.slots[index as usize] = State::InFlight(awaits);
        self.in_flight += 1;
    }

    /// `event` came for slot `index`: true when that freed the slot.
    #[inline]
    pub(crate) fn settle(&mut self, index: u32, event: Events) -> Result<bool, Misstep> {
        let slot = self
            .slots
            .get_mut(index as usize)
            .ok_or(Misstep::OutOfRange)?;
        let State::InFlight(awaits) = slot else {
            return Err(Misstep::NotInFlight);
        };
        if *awaits & event == 0 {
            return Err(Misstep::Twice);
        }
        *awaits &= !event;
        if *awaits != 0 {
            return Ok(false);
        }
        *slot = State::Free;
        self.free.push(index);
        self.in_flight -= 1;
        Ok(true)
    }

    /// True when slot `index` is in flight and still awaits `event` (the
    /// RDMA sender asks, when the receiver's board may free a slot).
    #[cfg(any(feature = "rdma", test))]
    #[inline]
    pub(crate) fn awaits(&self, index: u32, event: Events) -> bool {
        matches!(self.slots.get(index as usize), Some(State::InFlight(a)) if a & event != 0)
    }

    /// Frees every slot in flight for which `keep` says false (the peer
    /// that held them is gone); how many.
    pub(crate) fn reclaim(&mut self, keep: impl Fn(usize) -> bool) -> u32 {
        let mut n = 0;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot, State::InFlight(_)) && !keep(index) {
                *slot = State::Free;
                self.free.push(index as u32);
                self.in_flight -= 1;
                n += 1;
            }
        }
        n
    }

    /// True when slot `index` is in flight.
    #[inline]
    pub(crate) fn is_in_flight(&self, index: usize) -> bool {
        matches!(self.slots.get(index), Some(State::InFlight(_)))
    }

    /// True when a loan would succeed.
    #[inline]
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Slots sent and not yet free again.
    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETURNED: Events = 1;
    const WRITTEN: Events = 1;
    const CREDITED: Events = 2;

    #[test]
    fn awaits_says_which_events_a_slot_in_flight_still_waits_for() {
        let mut l = Ledger::new(2);
        let i = l.loan().unwrap();
        assert!(!l.awaits(i, CREDITED), "loaned, not sent");
        l.send(i, WRITTEN | CREDITED);
        assert!(l.awaits(i, WRITTEN) && l.awaits(i, CREDITED));
        assert_eq!(l.settle(i, CREDITED), Ok(false));
        assert!(l.awaits(i, WRITTEN) && !l.awaits(i, CREDITED));
        assert_eq!(l.settle(i, WRITTEN), Ok(true));
        assert!(!l.awaits(i, WRITTEN), "free again");
        assert!(!l.awaits(7, WRITTEN), "out of range");
    }

    #[test]
    fn a_slot_goes_free_loaned_in_flight_and_free_again() {
        let mut l = Ledger::new(2);
        assert_eq!(l.loan(), Some(0));
        assert_eq!(l.loan(), Some(1));
        assert_eq!(l.loan(), None);
        assert!(!l.has_free());
        l.unloan(1);
        assert!(l.has_free());
        l.send(0, RETURNED);
        assert_eq!(l.in_flight(), 1);
        assert!(l.is_in_flight(0) && !l.is_in_flight(1) && !l.is_in_flight(7));
        assert_eq!(l.settle(0, RETURNED), Ok(true));
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.loan(), Some(0));
        assert_eq!(l.loan(), Some(1));
    }

    #[test]
    fn two_events_free_a_slot_in_either_order_and_only_once_each() {
        let mut l = Ledger::new(2);
        for first in [WRITTEN, CREDITED] {
            let i = l.loan().unwrap();
            l.send(i, WRITTEN | CREDITED);
            assert_eq!(l.settle(i, first), Ok(false));
            assert_eq!(l.settle(i, first), Err(Misstep::Twice));
            assert_eq!(l.settle(i, (WRITTEN | CREDITED) & !first), Ok(true));
            assert_eq!(l.in_flight(), 0);
        }
    }

    #[test]
    fn a_peer_cannot_settle_a_slot_that_is_not_in_flight() {
        let mut l = Ledger::new(2);
        assert_eq!(l.settle(0, RETURNED), Err(Misstep::NotInFlight));
        assert_eq!(l.settle(2, RETURNED), Err(Misstep::OutOfRange));
        let i = l.loan().unwrap();
        assert_eq!(l.settle(i, RETURNED), Err(Misstep::NotInFlight));
        l.send(i, RETURNED);
        assert_eq!(l.settle(i, RETURNED), Ok(true));
        assert_eq!(l.settle(i, RETURNED), Err(Misstep::NotInFlight));
    }

    #[test]
    fn reclaim_frees_what_the_dead_peer_held_and_keeps_the_rest() {
        let mut l = Ledger::new(4);
        for _ in 0..3 {
            let i = l.loan().unwrap();
            l.send(i, RETURNED);
        }
        let loaned = l.loan().unwrap();
        assert_eq!(l.reclaim(|i| i == 1), 2);
        assert_eq!(l.in_flight(), 1);
        assert!(l.is_in_flight(1));
        assert!(!l.is_in_flight(loaned as usize), "a loan is not the peer's");
        assert_eq!(l.reclaim(|_| false), 1);
        assert_eq!(l.in_flight(), 0);
    }
}
