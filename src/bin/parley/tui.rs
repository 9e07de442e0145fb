//! Full-screen mode (ratatui on crossterm): the room list with unread
//! counts and mention marks, the current room's messages with a "new since
//! last read" line, a status line and an input line with history, editing
//! and completion. Commands are `app`'s, as in line mode.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use parley::client_stream::Connector;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph};
use ratatui::{DefaultTerminal, Frame};
use unicode_width::UnicodeWidthChar;

use crate::app::App;
use crate::out::{Out, ScreenEvent};
use crate::render::Directory;
use crate::{connect, mark_read_in_background, resume, session, Target};

/// Lines kept per room view.
const MAX_VIEW_LINES: usize = 2000;
/// Messages loaded per older page.
const OLDER_PAGE: i64 = 50;
/// Width of the room list.
const ROOM_LIST_WIDTH: u16 = 24;

/// Commands, for completion.
const COMMANDS: &[&str] = &[
    "/signup",
    "/login",
    "/logout",
    "/rooms",
    "/new",
    "/join",
    "/find",
    "/go",
    "/members",
    "/history",
    "/search",
    "/edit",
    "/delete",
    "/clear",
    "/rename",
    "/topic",
    "/add",
    "/leave",
    "/ban",
    "/unban",
    "/role",
    "/friends",
    "/friend",
    "/unfriend",
    "/dm",
    "/upload",
    "/download",
    "/whois",
    "/help",
    "/quit",
];

/// One line of a view: a message (with its id) or a notice.
#[derive(Clone, Debug)]
struct ViewLine {
    msg_id: Option<i64>,
    text: String,
}

/// What is shown of one room (0: the lines said outside any room).
#[derive(Default)]
struct View {
    lines: Vec<ViewLine>,
    /// The "new since last read" line goes before this message.
    first_new: Option<i64>,
    /// Lines scrolled up from the bottom.
    scroll: usize,
    /// No older messages remain on the server.
    complete: bool,
}

impl View {
    fn push(&mut self, line: ViewLine) {
        // A message already shown (history, then its live push) is not repeated.
        if line.msg_id.is_some() && self.lines.iter().rev().take(200).any(|l| l.msg_id == line.msg_id) {
            return;
        }
        self.lines.push(line);
        if self.lines.len() > MAX_VIEW_LINES {
            self.lines.drain(..self.lines.len() - MAX_VIEW_LINES);
            self.complete = false;
        }
    }

    fn oldest_message(&self) -> Option<i64> {
        self.lines.iter().find_map(|l| l.msg_id)
    }
}

/// What the input line is doing.
enum Input {
    Text,
    /// A masked password for this command.
    Password(String),
}

struct Screen {
    views: HashMap<i64, View>,
    shown: i64,
    input: Vec<char>,
    cursor: usize,
    mode: Input,
    history: Vec<String>,
    history_pos: Option<usize>,
    link: Option<String>,
    colour: bool,
    /// The message area's size at the last draw (for paging).
    page: usize,
    quit: bool,
    /// When the user's typing was last announced.
    typing_sent: Option<std::time::Instant>,
}

fn view_of(views: &mut HashMap<i64, View>, room: i64) -> &mut View {
    views.entry(room).or_default()
}

pub fn run(
    target: &Target,
    connector: Connector,
    tls_ca: Option<PathBuf>,
    saved: Option<session::Saved>,
) -> std::process::ExitCode {
    let (tx, rx) = crossbeam_channel::unbounded();
    let out = Out::screen(tx);
    let dir = Arc::new(Mutex::new(Directory::default()));
    let link = match connect(target, &connector, &out, &dir) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("parley: cannot connect to {}: {e}", target.server);
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut app = App::new(link, target.server.clone(), out, connector, tls_ca, true);
    app.dir = dir;
    mark_read_in_background(&app.link, app.dir.clone());
    // SIGTERM and SIGHUP end the view as Ctrl-C does, restoring the terminal.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    // ratatui::init enters the alternate screen in raw mode and restores the
    // terminal on panic too.
    let mut terminal = ratatui::init();
    let mut screen = Screen {
        views: HashMap::new(),
        shown: 0,
        input: Vec::new(),
        cursor: 0,
        mode: Input::Text,
        history: Vec::new(),
        history_pos: None,
        link: None,
        colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        page: 10,
        quit: false,
        typing_sent: None,
    };
    app.say(format!(
        "connected to {}; /help lists the commands",
        target.server
    ));
    resume(&mut app, saved);
    let result = event_loop(&mut terminal, &mut app, &mut screen, &rx, &stop);
    ratatui::restore();
    app.finish_transfers();
    std::thread::sleep(Duration::from_millis(600));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    screen: &mut Screen,
    events: &Receiver<ScreenEvent>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    while !screen.quit && !stop.load(Ordering::SeqCst) {
        while let Ok(ev) = events.try_recv() {
            screen.apply(ev);
        }
        terminal.draw(|f| screen.draw(f, app))?;
        if event::poll(Duration::from_millis(100))? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => screen.key(key, app),
                Event::Paste(text) => {
                    for c in text.chars().filter(|c| !c.is_control()) {
                        screen.insert(c);
                    }
                }
                _ => {} // a resize is drawn on the next turn
            }
        }
    }
    Ok(())
}

impl Screen {
    fn apply(&mut self, ev: ScreenEvent) {
        match ev {
            ScreenEvent::Notice(text) => {
                let shown = self.shown;
                view_of(&mut self.views, shown).push(ViewLine { msg_id: None, text });
            }
            ScreenEvent::Message { room, id, text } => {
                view_of(&mut self.views, room).push(ViewLine {
                    msg_id: Some(id),
                    text,
                });
            }
            ScreenEvent::Entered { room, first_new } => {
                self.shown = room;
                let view = view_of(&mut self.views, room);
                // Its history follows: shown afresh, with the marker.
                view.lines.clear();
                view.scroll = 0;
                view.complete = false;
                view.first_new = first_new;
            }
            ScreenEvent::Link(state) => self.link = state,
            ScreenEvent::Redraw => {}
        }
    }

    fn style(&self, style: Style) -> Style {
        if self.colour {
            style
        } else {
            Style::default().add_modifier(style.add_modifier & (Modifier::REVERSED | Modifier::BOLD))
        }
    }

    fn draw(&mut self, f: &mut Frame, app: &App) {
        let [main, status, input] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1), Constraint::Length(1)])
                .areas(f.area());
        let [rooms_area, messages_area] =
            Layout::horizontal([Constraint::Length(ROOM_LIST_WIDTH), Constraint::Min(10)]).areas(main);
        let dir = app.dir.lock();
        self.draw_rooms(f, rooms_area, &dir);
        self.draw_messages(f, messages_area, &dir);
        drop(dir);
        self.draw_status(f, status, app);
        self.draw_input(f, input, app);
    }

    fn draw_rooms(&self, f: &mut Frame, area: Rect, dir: &Directory) {
        let items: Vec<ListItem> = room_order(dir)
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let room = &dir.rooms[id];
                let key = if i < 9 { format!("{} ", i + 1) } else { "  ".into() };
                let mut spans = vec![Span::raw(key), Span::raw(dir.label(*id))];
                if room.unread > 0 {
                    spans.push(Span::styled(
                        format!(" {}", room.unread),
                        self.style(Style::default().add_modifier(Modifier::BOLD)),
                    ));
                }
                if room.mentions > 0 {
                    spans.push(Span::styled(
                        " @",
                        self.style(Style::default().fg(Color::Magenta)),
                    ));
                }
                let mut item = ListItem::new(Line::from(spans));
                if dir.current == Some(*id) {
                    item = item.style(self.style(Style::default().add_modifier(Modifier::REVERSED)));
                }
                item
            })
            .collect();
        let list = List::new(items).block(Block::default().borders(Borders::RIGHT).title("rooms"));
        f.render_widget(list, area);
    }

    fn draw_messages(&mut self, f: &mut Frame, area: Rect, dir: &Directory) {
        let title = match dir.current {
            Some(id) => dir.label(id),
            None => "parley".into(),
        };
        let block = Block::default().title(title);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let width = usize::from(inner.width.max(1));
        let height = usize::from(inner.height);
        self.page = height.saturating_sub(1).max(1);
        let view = view_of(&mut self.views, self.shown);
        let mut rows: Vec<Line> = Vec::new();
        for line in &view.lines {
            if line.msg_id.is_some() && line.msg_id == view.first_new {
                rows.push(Line::styled(
                    pad_to("── new since last read ", width, '─'),
                    Style::default().add_modifier(Modifier::BOLD),
                ));
            }
            let style = if line.text.ends_with("<- you") {
                Style::default().fg(Color::Magenta)
            } else if line.text.starts_with("error:") {
                Style::default().fg(Color::Red)
            } else if line.msg_id.is_none() {
                Style::default().add_modifier(Modifier::ITALIC)
            } else {
                Style::default()
            };
            for part in line.text.split('\n').flat_map(|l| wrap(l, width)) {
                rows.push(Line::styled(part, style));
            }
        }
        let colour = self.colour;
        let rows: Vec<Line> = rows
            .into_iter()
            .map(|l| if colour { l } else { l.style(Style::default()) })
            .collect();
        let view = view_of(&mut self.views, self.shown);
        view.scroll = view.scroll.min(rows.len().saturating_sub(height));
        let end = rows.len() - view.scroll;
        let start = end.saturating_sub(height);
        // Bottom-aligned: a short history sits just above the input.
        let mut shown: Vec<Line> = vec![Line::raw(""); height.saturating_sub(end - start)];
        shown.extend(rows[start..end].iter().cloned());
        f.render_widget(Paragraph::new(shown), inner);
    }

    fn draw_status(&self, f: &mut Frame, area: Rect, app: &App) {
        let who = app.logged_in_as().unwrap_or_else(|| "not logged in".into());
        let state = self.link.clone().unwrap_or_else(|| "connected".into());
        let typing = {
            let dir = app.dir.lock();
            dir.current
                .and_then(|room| dir.typing.get(&room))
                .filter(|(_, until)| *until > std::time::Instant::now())
                .map(|(who, _)| format!(" · {who} is typing…"))
                .unwrap_or_default()
        };
        let text = format!(" {} · {} · {}{typing}", app.server, who, state);
        let style = self.style(Style::default().add_modifier(Modifier::REVERSED));
        f.render_widget(
            Paragraph::new(pad_to(&text, usize::from(area.width), ' ')).style(style),
            area,
        );
    }

    fn draw_input(&self, f: &mut Frame, area: Rect, app: &App) {
        let prompt = match &self.mode {
            Input::Password(_) => "password: ".to_owned(),
            Input::Text => {
                let dir = app.dir.lock();
                dir.current
                    .map_or_else(|| "> ".to_owned(), |id| format!("{}> ", dir.label(id)))
            }
        };
        let shown: String = match self.mode {
            Input::Password(_) => "*".repeat(self.input.len()),
            Input::Text => self.input.iter().collect(),
        };
        let before: usize = self.input[..self.cursor]
            .iter()
            .map(|c| c.width().unwrap_or(0))
            .sum();
        let prompt_width = prompt.chars().filter_map(|c| c.width()).sum::<usize>();
        let width = usize::from(area.width.max(1));
        // Long input scrolls sideways to keep the cursor in view.
        let skip = (prompt_width + before + 1).saturating_sub(width);
        let line: String = format!("{prompt}{shown}").chars().skip(skip).collect();
        f.render_widget(Paragraph::new(line), area);
        let x = area.x + u16::try_from(prompt_width + before - skip).unwrap_or(0);
        f.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
    }

    fn insert(&mut self, c: char) {
        self.input.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn take_input(&mut self) -> String {
        self.cursor = 0;
        self.history_pos = None;
        std::mem::take(&mut self.input).into_iter().collect()
    }

    fn key(&mut self, key: KeyEvent, app: &mut App) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit = true,
            KeyCode::Char('d') if ctrl && self.input.is_empty() => self.quit = true,
            KeyCode::Char('n') if ctrl => self.switch(app, 1),
            KeyCode::Char('p') if ctrl => self.switch(app, -1),
            KeyCode::Char(d @ '1'..='9') if alt => {
                let index = d as usize - '1' as usize;
                let room = room_order(&app.dir.lock()).get(index).copied();
                if let Some(room) = room {
                    self.run(app, &format!("/go {room}"));
                }
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.input.len(),
            KeyCode::Char('u') if ctrl => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.input[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.input[start - 1] != ' ' {
                    start -= 1;
                }
                self.input.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Char(c) if !ctrl => {
                self.insert(c);
                if matches!(self.mode, Input::Text) && self.input.first() != Some(&'/') {
                    app.typing(&mut self.typing_sent);
                }
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::Up => self.recall(-1),
            KeyCode::Down => self.recall(1),
            KeyCode::PageUp => self.scroll_up(app),
            KeyCode::PageDown => {
                let page = self.page;
                let view = view_of(&mut self.views, self.shown);
                view.scroll = view.scroll.saturating_sub(page);
            }
            KeyCode::Tab => self.complete(app),
            KeyCode::Esc => {
                self.take_input();
                if matches!(self.mode, Input::Password(_)) {
                    self.mode = Input::Text;
                    app.say("cancelled");
                }
            }
            KeyCode::Enter => self.submit(app),
            _ => {}
        }
    }

    fn submit(&mut self, app: &mut App) {
        let line = self.take_input();
        if let Input::Password(command) = std::mem::replace(&mut self.mode, Input::Text) {
            app.supplied_password = Some(line);
            self.run(app, &command);
            return;
        }
        if line.trim().is_empty() {
            return;
        }
        self.history.push(line.clone());
        let asks_password = matches!(line.split_whitespace().next(), Some("/login" | "/signup"))
            && line.split_whitespace().nth(1).is_some()
            && std::env::var_os("PARLEY_PASSWORD").is_none();
        if asks_password {
            self.mode = Input::Password(line);
            return;
        }
        self.run(app, &line);
    }

    fn run(&mut self, app: &mut App, line: &str) {
        match app.run_line(line) {
            Ok(true) => {}
            Ok(false) => self.quit = true,
            Err(e) => app.say(format!("error: {e}")),
        }
    }

    fn recall(&mut self, step: isize) {
        if self.history.is_empty() {
            return;
        }
        let last = self.history.len() as isize;
        let pos = self.history_pos.map_or(last, |p| p as isize) + step;
        if pos >= last {
            self.history_pos = None;
            self.input.clear();
        } else {
            let pos = pos.max(0) as usize;
            self.history_pos = Some(pos);
            self.input = self.history[pos].chars().collect();
        }
        self.cursor = self.input.len();
    }

    /// Switches to the next (`1`) or previous (`-1`) room of the list.
    fn switch(&mut self, app: &mut App, step: isize) {
        let (order, current) = {
            let dir = app.dir.lock();
            (room_order(&dir), dir.current)
        };
        if order.is_empty() {
            return;
        }
        let here = current.and_then(|c| order.iter().position(|r| *r == c));
        let n = order.len() as isize;
        let next = match here {
            Some(i) => (i as isize + step).rem_euclid(n),
            None => 0,
        };
        self.run(app, &format!("/go {}", order[next as usize]));
    }

    /// Scrolls up a page, loading older messages from the server at the top.
    fn scroll_up(&mut self, app: &mut App) {
        let page = self.page;
        let room = self.shown;
        let view = view_of(&mut self.views, room);
        view.scroll += page;
        let near_top = view.scroll + page * 2 >= view.lines.len();
        if room == 0 || view.complete || !near_top {
            return;
        }
        let Some(oldest) = view.oldest_message() else {
            return;
        };
        match app.older_lines(room, oldest, OLDER_PAGE) {
            Ok(older) => {
                let view = view_of(&mut self.views, room);
                view.complete = (older.len() as i64) < OLDER_PAGE;
                let mut lines: Vec<ViewLine> = older
                    .into_iter()
                    .map(|(id, text)| ViewLine {
                        msg_id: Some(id),
                        text,
                    })
                    .collect();
                lines.append(&mut view.lines);
                view.lines = lines;
            }
            Err(e) => app.say(format!("error: {e}")),
        }
    }

    /// Tab: completes a command, a `@login`, or a room after `/go`, `/join` or `#`.
    fn complete(&mut self, app: &App) {
        let text: String = self.input[..self.cursor].iter().collect();
        let start = text.rfind(' ').map_or(0, |i| i + 1);
        let word = &text[start..];
        if word.is_empty() {
            return;
        }
        let dir = app.dir.lock();
        let first = text.split_whitespace().next().unwrap_or("");
        let mut candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            COMMANDS.iter().map(|c| (*c).to_owned()).collect()
        } else if let Some(prefix) = word.strip_prefix('@') {
            let mut logins: Vec<String> = dir.users.values().map(|l| format!("@{l}")).collect();
            logins.extend(
                dir.rooms
                    .values()
                    .filter_map(|r| r.peer.as_ref().map(|p| format!("@{p}"))),
            );
            logins.retain(|l| l[1..].to_lowercase().starts_with(&prefix.to_lowercase()));
            logins
        } else if word.starts_with('#') || matches!(first, "/go" | "/join") {
            dir.rooms
                .values()
                .filter(|r| r.peer.is_none())
                .map(|r| format!("#{}", r.name))
                .collect()
        } else {
            Vec::new()
        };
        drop(dir);
        let bare = word.trim_start_matches('#');
        candidates.retain(|c| {
            c.trim_start_matches('#')
                .to_lowercase()
                .starts_with(&bare.to_lowercase())
                || c.starts_with(word)
        });
        candidates.sort();
        candidates.dedup();
        let Some(choice) = candidates.first() else { return };
        let completed = if candidates.len() == 1 {
            format!("{choice} ")
        } else {
            common_prefix(&candidates)
        };
        if completed.chars().count() < word.chars().count() {
            return;
        }
        let word_start = self.input[..self.cursor].len() - word.chars().count();
        self.input.splice(word_start..self.cursor, completed.chars());
        self.cursor = word_start + completed.chars().count();
        if candidates.len() > 1 {
            app.say(candidates.join("  "));
        }
    }
}

/// Rooms in the list's order (by id): Alt+1 is the first.
fn room_order(dir: &Directory) -> Vec<i64> {
    let mut ids: Vec<i64> = dir.rooms.keys().copied().collect();
    ids.sort_unstable();
    ids
}

fn common_prefix(words: &[String]) -> String {
    let first: Vec<char> = words[0].chars().collect();
    let mut n = first.len();
    for w in &words[1..] {
        n = n.min(first.iter().zip(w.chars()).take_while(|(a, b)| **a == *b).count());
    }
    first[..n].iter().collect()
}

/// `text` followed by `fill` up to `width` columns.
fn pad_to(text: &str, width: usize, fill: char) -> String {
    let used: usize = text.chars().filter_map(|c| c.width()).sum();
    let mut s = text.to_owned();
    s.extend(std::iter::repeat_n(fill, width.saturating_sub(used)));
    s
}

/// Splits a line into rows of at most `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width && !row.is_empty() {
            rows.push(std::mem::take(&mut row));
            used = 0;
        }
        row.push(c);
        used += w;
    }
    rows.push(row);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_counts_columns() {
        assert_eq!(wrap("abcdef", 4), vec!["abcd", "ef"]);
        assert_eq!(wrap("日本語", 4), vec!["日本", "語"]);
        assert_eq!(wrap("", 4), vec![""]);
    }

    #[test]
    fn completion_prefix() {
        assert_eq!(common_prefix(&["/delete".into(), "/dm".into()]), "/d");
    }
}
