import Foundation
import Logging
import Testing

@testable import TsidpCLI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite("--unix-socket: the socket file")
struct UnixSocketFileTests {
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as UsageError {
            return error.message
        } catch {
            return "\(type(of: error)): \(error)"
        }
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }

    @Test("created with mode 0660 whatever the umask, refusing connections until it listens, removed at the end")
    func createAndRemove() throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/tsidp.sock"
        let previous = umask(0)
        let file: UnixSocketFile
        do {
            defer { umask(previous) }
            file = try UnixSocketFile.create(path: path)
        }
        #expect(Self.mode(path) == 0o660)
        #expect(UnixSocketFile.probe(path) == ECONNREFUSED)
        try #require(listen(file.descriptor, 8) == 0)
        #expect(UnixSocketFile.probe(path) == 0)
        close(file.descriptor)
        file.remove(logger: Self.quiet)
        #expect(Self.mode(path) == nil)
    }

    @Test("a socket file nothing listens on is replaced; a live one is left alone and refused")
    func staleAndLive() throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/tsidp.sock"
        // A process that stopped without removing its socket: the file stays, nobody listens.
        close(try TestSockets.unix(at: path))
        #expect(Self.mode(path) != nil)
        let replacing = try UnixSocketFile.create(path: path)
        close(replacing.descriptor)
        replacing.remove(logger: Self.quiet)

        let live = try TestSockets.unix(at: path)
        defer { close(live) }
        #expect(
            Self.message { _ = try UnixSocketFile.create(path: path) }
                == "cannot listen on unix socket \(path): another program is listening on it; stop it or choose another --unix-socket"
        )
        #expect(UnixSocketFile.probe(path) == 0, "the live socket must still accept connections")
    }

    @Test("a file that is not a socket, or a missing directory, is refused in one line")
    func notASocket() throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/notes.txt"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        #expect(
            Self.message { _ = try UnixSocketFile.create(path: path) }
                == "cannot listen on unix socket \(path): the file exists and is not a socket; remove it or choose another --unix-socket"
        )
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
        #expect(
            Self.message { _ = try UnixSocketFile.create(path: directory + "/missing/tsidp.sock") }
                == "cannot listen on unix socket \(directory)/missing/tsidp.sock: its directory does not exist; create it first"
        )
    }

    @Test("a socket file that another process put in its place is not removed")
    func replacedFileStays() throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/tsidp.sock"
        let file = try UnixSocketFile.create(path: path)
        close(file.descriptor)
        // Moved aside (a second name keeps its inode in use), and another socket made at the path.
        try #require(link(path, directory + "/moved.sock") == 0)
        unlink(path)
        let other = try TestSockets.unix(at: path)
        defer { close(other) }
        file.remove(logger: Self.quiet)
        #expect(UnixSocketFile.probe(path) == 0)
    }
}
