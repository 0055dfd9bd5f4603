import Foundation
import Synchronization

/// The signal (SIGINT, SIGTERM or SIGHUP) received, set by the signal handler itself. A handler can
/// reach no object, hence this one global; it is written only there and read by
/// `SignalWatcher`.
private let receivedSignal = Atomic<Int32>(0)
/// Whether the handler acknowledges the first signal on stderr (a person at a terminal).
private let announceSignal = Atomic<Bool>(false)

/// Catches SIGINT, SIGTERM and SIGHUP so that a command stops at a safe point (the next stage
/// boundary, or within a second inside a long SQLite statement) instead of dying mid-write; the
/// deploy then handles it like an error. SIGHUP (an SSH session that dropped) is handled as
/// SIGTERM: the operator is gone, so the deploy stops and undoes as at that stage rather than
/// going on unwatched.
///
/// The flag is set inside the handler (an atomic store, async-signal-safe), not later on a
/// queue: a check right after a signal interrupted a sleep or a system call must already see
/// it, or a restore could commit after the operator pressed Ctrl-C.
final class SignalWatcher: Sendable {
    /// `acknowledge`: say on stderr, once, that the first signal was seen (on a terminal, not
    /// with `--quiet`); without it only the command's final line speaks.
    init(acknowledge: Bool) {
        announceSignal.store(acknowledge, ordering: .sequentiallyConsistent)
        for number in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                guard receivedSignal.exchange(number, ordering: .sequentiallyConsistent) == 0,
                      announceSignal.load(ordering: .sequentiallyConsistent) else { return }
                let message: StaticString = number == SIGINT ? "\ndeployctl: received SIGINT; stopping at the next safe point\n"
                    : number == SIGHUP ? "\ndeployctl: received SIGHUP; stopping at the next safe point\n"
                    : "\ndeployctl: received SIGTERM; stopping at the next safe point\n"
                _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(number, &action, nil)
        }
        // A parent may have started us with these signals blocked (they would then stay
        // pending and never reach the handler).
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGHUP)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The signal received, if any (the first, when several came).
    var received: Int32? {
        let value = receivedSignal.load(ordering: .sequentiallyConsistent)
        return value == 0 ? nil : value
    }
}

